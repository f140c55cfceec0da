"""perf_analyzer against the `vhs` model, per mode, with the per-engine breakdown (`make perf`).

Starts the real server on an exported repository, writes perf_analyzer's `--input-data` JSON (BYTES
inputs cannot be random), sweeps concurrency and prints throughput, p50/p99 latency and how many
engine executions served how many candidates (the dynamic batcher at work).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vhs import protocol as P
from vhs.modes import MODES
from vhs.serving.perf_analyzer import run_perf_analyzer
from vhs.serving.server import TritonServer

PROMPTS = ("a photo of a red circle", "a photo of three triangles", "a photo of a blue square left of a ring")


def input_data(mode: str, num_candidates: int) -> dict:
    """perf_analyzer's --input-data: one entry per prompt, cycled through by perf_analyzer."""
    return {
        "data": [
            {P.PROMPT: [prompt], P.NUM_CANDIDATES: [num_candidates], P.SEED: [seed], P.MODE: [mode]}
            for seed, prompt in enumerate(PROMPTS)
        ]
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--modes", default="vhs,clip")
    parser.add_argument("-n", "--num-candidates", type=int, default=4)
    parser.add_argument("--concurrency-range", default="1:4:1")
    parser.add_argument("--measurement-interval-ms", type=int, default=4000)
    parser.add_argument("--output", type=Path, default=Path("out/perf"))
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    with TritonServer(args.model_repository, build_dir=args.build_dir) as server:
        for mode in args.modes.split(","):
            data_path = args.output / f"input_{mode}.json"
            data_path.write_text(json.dumps(input_data(mode, args.num_candidates)))
            report = run_perf_analyzer(
                P.ORCHESTRATOR_MODEL,
                server.grpc_url,
                concurrency_range=args.concurrency_range,
                input_data=data_path,
                # the engines the mode calls: perf_analyzer fails on a composing model that never ran
                bls_composing_models=MODES[mode].engines,
                measurement_interval_ms=args.measurement_interval_ms,
                build_dir=args.build_dir,
            )
            (args.output / f"perf_{mode}.txt").write_text(report.output)
            print(f"mode {mode}, N = {args.num_candidates}")
            print(f"{'concurrency':>11}{'infer/s':>10}{'p50 ms':>10}{'p99 ms':>10}  executions/inferences")
            for row in report.rows:
                level = float(row["Concurrency"])
                engines = report.composing_models.get(level, {})
                batching = ", ".join(
                    f"{name} {int(s['execution_count'])}/{int(s['inference_count'])}"
                    for name, s in engines.items()
                    if s.get("inference_count")
                )
                print(
                    f"{int(level):>11}{row['Inferences/Second']:>10.2f}{row['p50 latency'] / 1e3:>10.1f}"
                    f"{row['p99 latency'] / 1e3:>10.1f}  {batching}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
