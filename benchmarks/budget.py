"""The paper's main table: verifiers compared at matched time budgets, through the served path.

One run on the real Triton server measures the median request time of every verifier mode at every
N (interleaved, `vhs.benchmarks.latency.measure`). The budgets are the CLIP verifier's Best-of-2, -4 and
-6 request times; for each, the largest N whose VHS (and AE-latent) request fits, and the Best-of-N
GenEval score of each at its N, from `make eval-verifiers` (the evaluation split; candidate i of a
prompt is the served one, so those are the scores the server would return). Writes a Markdown
table, a CSV and a plot of score against request time per verifier.

    python -m vhs.benchmarks.budget --model-repository build/shapes/model_repository \\
        --scores build/eval-verifiers/scores.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer

from .latency import measure

# The trained verifier behind each served mode (folder names of `make train-verifier`).
VERIFIER_OF_MODE = {"vhs": "vhs_l7", "latent": "latent", "clip": "clip"}
CLIP_BUDGETS = (2, 4, 6)  # the CLIP verifier's N whose request times are the budgets


def largest_n_within(times_ms: dict[int, float], budget_ms: float) -> int | None:
    """The largest N whose time fits the budget (None if not even N = 1 does)."""
    fitting = [n for n, ms in times_ms.items() if ms <= budget_ms]
    return max(fitting) if fitting else None


def budget_table(times: dict[str, dict[int, float]], curves: dict[str, list[float]]) -> list[dict]:
    """One row per CLIP budget: the budget, and each mode's N and Best-of-N score within it."""
    rows = []
    for clip_n in CLIP_BUDGETS:
        budget = times["clip"][clip_n]
        row = {"budget": f"CLIP Best-of-{clip_n}", "budget_ms": budget}
        for mode, verifier in VERIFIER_OF_MODE.items():
            n = clip_n if mode == "clip" else largest_n_within(times[mode], budget)
            row[f"{mode}_n"] = n
            row[f"{mode}_score"] = None if n is None else curves[verifier][n - 1]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    columns = ["budget", "time (ms)", "CLIP N", "CLIP score", "AE-latent N", "AE-latent score", "VHS N",
               "VHS score", "VHS - CLIP"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * 8]
    for row in rows:
        cells = [f"{row['budget_ms']:.1f}"]
        for mode in ("clip", "latent", "vhs"):
            score = row[f"{mode}_score"]
            cells += [str(row[f"{mode}_n"]), "-" if score is None else f"{score:.3f}"]
        gain = None if row["vhs_score"] is None else row["vhs_score"] - row["clip_score"]
        cells.append("-" if gain is None else f"{gain:+.3f}")
        lines.append(f"| {row['budget']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(times: dict[str, dict[int, float]], curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for mode, verifier in VERIFIER_OF_MODE.items():
        counts = sorted(times[mode])
        axis.plot([times[mode][n] for n in counts], [curves[verifier][n - 1] for n in counts], marker="o",
                  label=f"{mode} ({verifier})")  # fmt: skip
    axis.set_xlabel("median request time through the server (ms)")
    axis.set_ylabel("GenEval overall (shapes evaluator)")
    axis.set_title("Best-of-N score against time budget")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--scores", type=Path, required=True, help="JSON written by make eval-verifiers")
    parser.add_argument("--max-candidates", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("out/budget"))
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    curves = json.loads(args.scores.read_text())["best_of_n_overall"]
    counts = list(range(1, args.max_candidates + 1))
    args.output.mkdir(parents=True, exist_ok=True)
    with (
        TritonServer(args.model_repository, build_dir=args.build_dir) as server,
        VHSClient(server.grpc_url) as client,
    ):
        runners = {
            mode: (lambda m: lambda prompt, n: client.generate(prompt, n, 0, m))(mode)
            for mode in VERIFIER_OF_MODE
        }
        for run in runners.values():  # warm-up: lazy initialisation stays out of the figures
            run("a photo of a circle", args.max_candidates)
        medians = measure(runners, counts, args.repeats)
    times = {mode: {n: medians[(mode, n)] for n in counts} for mode in VERIFIER_OF_MODE}
    rows = budget_table(times, curves)
    print(format_table(rows))
    with open(args.output / "budget.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mode", "num_candidates", "median_ms", "best_of_n_overall"])
        for mode, verifier in VERIFIER_OF_MODE.items():
            for n in counts:
                writer.writerow([mode, n, f"{times[mode][n]:.2f}", f"{curves[verifier][n - 1]:.4f}"])
    plot(times, curves, args.output / "budget.png")
    print(f"wrote {args.output / 'budget.csv'} and {args.output / 'budget.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
