"""How well the server keeps BUDGET_MS (`make bench-served-budget`): one real Triton server, concurrency 1.

Per mode (vhs, clip): the first budget request calibrates the mode's latency model, `WARM_UP` more
feed it; then `--requests` requests with budgets spread between the server's own current
predictions for N = 1 and N = max_candidates (refreshed every `REFRESH` requests: the predictions
follow the machine). Prints per mode the N chosen, how many budgets fitted N = 1 (the others are
served at N = 1 and say so), and of those the share finished within the budget by the orchestrator's
measured time (REQUEST_MS, what the budget bounds) and by the client's round trip; writes a CSV of
every request.

    python -m vhs.benchmarks.served_budget --model-repository build/shapes/model_repository
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer

PROMPT = "a photo of a red circle left of a blue square"
MODES = ("vhs", "clip")
WARM_UP = 16
REFRESH = 10
BUDGET_STEPS = 5  # budgets per refresh, from 1.1x the N = 1 prediction to 1.2x the largest N's


@dataclass(frozen=True)
class BudgetRecord:
    mode: str
    budget_ms: float
    num_candidates_used: int
    predicted_ms: float
    request_ms: float
    round_trip_ms: float


def predicted_range(client: VHSClient, mode: str) -> tuple[float, float]:
    """(predicted ms at N = 1, at the preset's max_candidates) as the server predicts them now: the
    predictions reported for a budget nothing fits and for one everything fits."""
    return (
        client.generate(PROMPT, mode=mode, budget_ms=1e-3).predicted_ms,
        client.generate(PROMPT, mode=mode, budget_ms=1e9).predicted_ms,
    )


def sweep(client: VHSClient, mode: str, requests: int) -> list[BudgetRecord]:
    """`requests` budget requests in `mode` after calibration and warm-up (see the module doc)."""
    for seed in range(WARM_UP + 1):
        client.generate(PROMPT, seed=seed, mode=mode, budget_ms=1e9)
    records = []
    for index in tqdm(range(requests), desc=f"budgets {mode}", unit="request"):
        if index % REFRESH == 0:
            low, high = predicted_range(client, mode)
            budgets = np.linspace(low * 1.1, high * 1.2, BUDGET_STEPS)
        budget_ms = float(budgets[index % BUDGET_STEPS])
        result = client.generate(PROMPT, seed=index, mode=mode, budget_ms=budget_ms)
        records.append(
            BudgetRecord(
                mode,
                budget_ms,
                result.num_candidates_used,
                result.predicted_ms,
                result.request_ms,
                result.round_trip_ms,
            )  # fmt: skip
        )
    return records


def summary(records: list[BudgetRecord]) -> str:
    """One line: N range, budgets that fit N = 1, shares within budget, REQUEST_MS / BUDGET_MS."""
    fitting = [r for r in records if r.predicted_ms <= r.budget_ms]
    used = sorted({r.num_candidates_used for r in records})
    within = np.mean([r.request_ms <= r.budget_ms for r in fitting])
    round_trip = np.mean([r.round_trip_ms <= r.budget_ms for r in fitting])
    ratio = np.array([r.request_ms / r.budget_ms for r in fitting])
    return (
        f"{records[0].mode:>5}: N used {used[0]}..{used[-1]}; {len(fitting)} of {len(records)} budgets fit "
        f"N = 1; within budget {within:.1%} (REQUEST_MS), {round_trip:.1%} (round trip); "
        f"REQUEST_MS / BUDGET_MS median {np.median(ratio):.2f}, p97 {np.quantile(ratio, 0.97):.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200, help="budget requests per mode")
    parser.add_argument("--output", type=Path, default=Path("out/served-budget"))
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    with (
        TritonServer(args.model_repository, build_dir=args.build_dir) as server,
        VHSClient(server.grpc_url) as client,
    ):
        records = {mode: sweep(client, mode, args.requests) for mode in MODES}
    for mode in MODES:
        print(summary(records[mode]))
    path = args.output / "served_budget.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([field.name for field in fields(BudgetRecord)])
        writer.writerows(astuple(record) for mode in MODES for record in records[mode])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
