"""The engines' queue delay and the orchestrator's instances against latency, throughput and merging.

    .venv/bin/python -m vhs.benchmarks.queue_delay --model-repository build/shapes/model_repository

For each engine queue delay (`max_queue_delay_microseconds`) and `vhs` instance count, a copy of the
repository that differs only in those (benchmarks/variants.py) is served, and a closed loop of `c` clients
(c = 1 and 4) sends `--requests` vhs requests (N = 4). Per cell: requests per second, median round
trip, and for each engine its executions per request (1 = every request ran alone; below 1 =
requests shared executions) from Triton's statistics. `--rounds` repeats every cell, settings
interleaved, so load from elsewhere on the machine hits every delay alike; the table shows medians.
docs/performance.md has the figures the exporter's defaults were chosen on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tritonclient.grpc as grpcclient

from vhs.client.vhs_client import ImageRequest, VHSClient
from vhs.launcher.server import TritonServer
from vhs.modes import MODES

from .variants import variant, with_orchestrator_instances, with_queue_delay

PROMPTS = (
    "a photo of a red circle",
    "a photo of a circle and a square",
    "a photo of three triangles",
    "a photo of a blue square left of a green ring",
)


def engine_counts(grpc_url: str, engines: Sequence[str]) -> dict[str, tuple[int, int]]:
    """{engine: (inferences, executions)} so far, from Triton's statistics extension."""
    with grpcclient.InferenceServerClient(grpc_url) as triton:
        stats = triton.get_inference_statistics(as_json=True)["model_stats"]
    return {
        s["name"]: (int(s.get("inference_count", 0)), int(s.get("execution_count", 0)))
        for s in stats
        if s["name"] in engines
    }


def measure_cell(grpc_url: str, concurrency: int, requests: int, mode: str, n: int) -> dict:
    """{"requests_per_s", "p50_ms", "executions_per_request": {engine: ...}} of one closed loop."""
    engines = MODES[mode].engines
    batch = [ImageRequest(PROMPTS[i % len(PROMPTS)], n, i, mode) for i in range(requests)]
    with VHSClient(grpc_url) as client:

        def timed(request: ImageRequest) -> float:
            start = time.perf_counter()
            client.generate_request(request)
            return (time.perf_counter() - start) * 1e3

        before = engine_counts(grpc_url, engines)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            round_trips = list(pool.map(timed, batch))
        elapsed = time.perf_counter() - start
        after = engine_counts(grpc_url, engines)
    return {
        "requests_per_s": requests / elapsed,
        "p50_ms": statistics.median(round_trips),
        "executions_per_request": {e: (after[e][1] - before[e][1]) / requests for e in engines},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--delays-us", default="0,500,2000")
    parser.add_argument("--orchestrator-instances", default="4")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", default="vhs")
    parser.add_argument("-n", "--num-candidates", type=int, default=4)
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    settings = [
        (int(delay), int(instances))
        for instances in args.orchestrator_instances.split(",")
        for delay in args.delays_us.split(",")
    ]
    levels = [int(c) for c in args.concurrency.split(",")]
    cells: dict[tuple[int, int, int], list[dict]] = {}
    for _ in range(args.rounds):
        for delay, instances in settings:
            edits = with_queue_delay(delay), with_orchestrator_instances(instances)
            with (
                variant(args.model_repository, *edits) as repository,
                TritonServer(repository, build_dir=args.build_dir) as server,
            ):
                measure_cell(server.grpc_url, 1, len(PROMPTS), args.mode, args.num_candidates)
                for concurrency in levels:
                    cell = measure_cell(
                        server.grpc_url, concurrency, args.requests, args.mode, args.num_candidates
                    )
                    cells.setdefault((instances, delay, concurrency), []).append(cell)
    engines = MODES[args.mode].engines
    print(
        f"mode {args.mode}, N = {args.num_candidates}, {args.requests} requests per cell, "
        f"median of {args.rounds} rounds; engine columns: executions per request"
    )
    print(
        f"{'vhs inst':>8}{'delay us':>9}{'clients':>8}{'req/s':>8}{'p50 ms':>8}"
        + "".join(f"{e:>14}" for e in engines)
    )
    for (instances, delay, concurrency), runs in sorted(cells.items()):
        per_engine = {e: statistics.median(r["executions_per_request"][e] for r in runs) for e in engines}
        print(
            f"{instances:>8}{delay:>9}{concurrency:>8}"
            f"{statistics.median(r['requests_per_s'] for r in runs):>8.2f}"
            f"{statistics.median(r['p50_ms'] for r in runs):>8.1f}"
            + "".join(f"{per_engine[e]:>14.2f}" for e in engines)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
