"""Generation + verification latency of every mode, side by side in one run (`make bench-latency`).

For each N it times, interleaved round-robin so machine noise hits every column alike:
    served  <mode>                the real Triton server, one gRPC request per prompt (client round trip),
                                  for every mode of the table (vhs/modes.py); "none" is Best-of-1 (only
                                  candidate 0 is generated), the floor for every comparison
    in-process vhs                the PyTorch reference pipeline in this process (no server)
and prints medians and the ratios the paper reports (VHS time over CLIP-verifier time, ...), writes a
CSV and a plot. Ratios, not absolute times, are what carry over between machines.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from client.vhs_client import VHSClient
from vhs.modes import mode_names
from vhs.pipeline import VHSPipeline
from vhs.serving.server import TritonServer

PROMPTS = (
    "a photo of a red circle",
    "a photo of a circle and a square",
    "a photo of three triangles",
    "a photo of a blue square left of a green ring",
)
COLUMNS = (*(f"served {mode}" for mode in mode_names()), "in-process vhs")


def measure(
    runners: dict[str, Callable[[str, int], None]], candidate_counts: Sequence[int], repeats: int
) -> dict[tuple[str, int], float]:
    """Median milliseconds of each runner at each N; runs are interleaved across runners."""
    samples: dict[tuple[str, int], list[float]] = {}
    steps = [(n, r, p) for n in candidate_counts for r in range(repeats) for p in PROMPTS]
    for n, _, prompt in tqdm(steps, desc="latency", unit="round"):
        for name, run in runners.items():
            start = time.perf_counter()
            run(prompt, n)
            samples.setdefault((name, n), []).append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in samples.items()}


def report(medians: dict[tuple[str, int], float], candidate_counts: Sequence[int]) -> str:
    lines = [
        f"{'N':>3}" + "".join(f"{c:>16}" for c in COLUMNS) + f"{'vhs/clip':>10}{'vhs/latent':>12}"
        f"{'vhs/Bo1':>9}{'served/in-proc':>16}"
    ]
    for n in candidate_counts:
        row = {c: medians[(c, n)] for c in COLUMNS}
        lines.append(
            f"{n:>3}"
            + "".join(f"{row[c]:>14.1f}ms" for c in COLUMNS)
            + f"{row['served vhs'] / row['served clip']:>10.2f}"
            + f"{row['served vhs'] / row['served latent']:>12.2f}"
            + f"{row['served vhs'] / row['served none']:>9.2f}"
            + f"{row['served vhs'] / row['in-process vhs']:>16.2f}"
        )
    return "\n".join(lines)


def plot(medians: dict[tuple[str, int], float], candidate_counts: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for column in COLUMNS:
        axis.plot(
            candidate_counts, [medians[(column, n)] for n in candidate_counts], marker="o", label=column
        )
    axis.set_xlabel("candidates N")
    axis.set_ylabel("median latency per prompt (ms)")
    axis.set_title("Best-of-N generation + verification")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="the preset the repository was exported from")
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--candidates", default="1,2,4,8", help="comma-separated N values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("out/bench"))
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    candidate_counts = [int(n) for n in args.candidates.split(",")]
    args.output.mkdir(parents=True, exist_ok=True)

    pipeline = VHSPipeline.from_preset(args.preset)
    with (
        TritonServer(args.model_repository, build_dir=args.build_dir) as server,
        VHSClient(server.grpc_url) as client,
    ):

        def served(mode: str) -> Callable[[str, int], None]:
            return lambda prompt, n: client.generate(prompt, n, 0, mode)

        runners = {f"served {mode}": served(mode) for mode in mode_names()}
        runners["in-process vhs"] = lambda prompt, n: pipeline(prompt, n, 0, "vhs")
        for run in runners.values():  # warm-up: lazy initialisation stays out of the figures
            run(PROMPTS[0], max(candidate_counts))
        medians = measure(runners, candidate_counts, args.repeats)

    table = report(medians, candidate_counts)
    print(table)
    with open(args.output / "latency.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["runner", "num_candidates", "median_ms"])
        writer.writerows([name, n, f"{ms:.3f}"] for (name, n), ms in sorted(medians.items()))
    (args.output / "latency.txt").write_text(table + "\n")
    plot(medians, candidate_counts, args.output / "latency.png")
    print(f"wrote {args.output / 'latency.csv'}, {args.output / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
