"""The paper's main table: verifiers compared at matched time budgets, through the served path.

One run on the real Triton server measures the median request time of every verifier mode at every
N (interleaved, `vhs.benchmarks.latency.measure`). The budgets are the CLIP verifier's Best-of-2, -4 and
-6 request times; for each, the largest N whose VHS (and AE-latent) request fits, and the Best-of-N
GenEval score of each at its N, from `make eval-verifiers` (the evaluation split; candidate i of a
prompt is the served one, so those are the scores the server would return). Writes a Markdown
table (VHS - CLIP with its paired standard error over prompts), a CSV and a plot of score against
request time per verifier.

    python -m vhs.benchmarks.budget --model-repository build/shapes/model_repository \\
        --scores build/eval-verifiers/evaluation.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer
from vhs.train.verifier_metrics import overall_difference

from .latency import measure

MODES = ("clip", "latent", "vhs")  # the verifier modes compared, as named in the scores' "verifiers"
CLIP_BUDGETS = (2, 4, 6)  # the CLIP verifier's N whose request times are the budgets


def largest_n_within(times_ms: dict[int, float], budget_ms: float) -> int | None:
    """The largest N whose time fits the budget (None if not even N = 1 does)."""
    fitting = [n for n, ms in times_ms.items() if ms <= budget_ms]
    return max(fitting) if fitting else None


def budget_table(times: dict[str, dict[int, float]], scores: dict) -> list[dict]:
    """One row per CLIP budget: the budget, each mode's N and Best-of-N score within it, and VHS -
    CLIP with its paired standard error (the same prompts, each verifier's chosen verdict)."""
    rows = []
    for clip_n in CLIP_BUDGETS:
        budget = times["clip"][clip_n]
        row = {"budget": f"CLIP Best-of-{clip_n}", "budget_ms": budget}
        for mode in MODES:
            n = clip_n if mode == "clip" else largest_n_within(times[mode], budget)
            verifier = scores["verifiers"][mode]
            row[f"{mode}_n"] = n
            row[f"{mode}_score"] = None if n is None else verifier["best_of_n_overall"][n - 1]
            row[f"{mode}_verdicts"] = (
                None if n is None else np.array(list(verifier["chosen_verdicts"][n - 1]), float)
            )
        if row["vhs_n"] is not None:
            row["vhs_minus_clip"] = overall_difference(
                row["vhs_verdicts"], row["clip_verdicts"], scores["prompt_tags"]
            )
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
            cells += ["-", "-"] if score is None else [str(row[f"{mode}_n"]), f"{score:.3f}"]
        gain = row.get("vhs_minus_clip")
        cells.append("-" if gain is None else f"{gain[0]:+.3f} ± {gain[1]:.3f}")
        lines.append(f"| {row['budget']} | " + " | ".join(cells) + " |")
    lines.append("\n± is one standard error of the difference, paired over the evaluation prompts.")
    return "\n".join(lines)


def plot(times: dict[str, dict[int, float]], curves: dict[str, list[float]], path: Path) -> None:
    """Best-of-N score against median request time, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for mode in MODES:
        counts = sorted(times[mode])
        scores = [curves[mode][n - 1] for n in counts]
        axis.plot([times[mode][n] for n in counts], scores, marker="o", label=mode)
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
    scores = json.loads(args.scores.read_text())
    curves = {mode: scores["verifiers"][mode]["best_of_n_overall"] for mode in MODES}
    counts = list(range(1, min(args.max_candidates, *map(len, curves.values())) + 1))
    args.output.mkdir(parents=True, exist_ok=True)
    with (
        TritonServer(args.model_repository, build_dir=args.build_dir) as server,
        VHSClient(server.grpc_url) as client,
    ):
        runners = {
            mode: (lambda m: lambda prompt, n: client.generate(prompt, n, 0, m))(mode) for mode in MODES
        }
        for run in runners.values():  # warm-up: lazy initialisation stays out of the figures
            run("a photo of a circle", args.max_candidates)
        medians = measure(runners, counts, args.repeats)
    times = {mode: {n: medians[(mode, n)] for n in counts} for mode in MODES}
    rows = budget_table(times, scores)
    print(format_table(rows))
    with open(args.output / "budget.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mode", "num_candidates", "median_ms", "best_of_n_overall"])
        for mode in MODES:
            for n in counts:
                writer.writerow([mode, n, f"{times[mode][n]:.2f}", f"{curves[mode][n - 1]:.4f}"])
    plot(times, curves, args.output / "budget.png")
    print(f"wrote {args.output / 'budget.csv'} and {args.output / 'budget.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
