"""First requests after a start against warm ones (docs/performance.md, "Cold start").

    .venv/bin/python -m vhs.benchmarks.cold_start --model-repository build/shapes/model_repository
    .venv/bin/python -m vhs.benchmarks.cold_start --model-repository ... --without-warmup   # before

Starts the real server `--starts` times on a repository; after each start it sends `--requests`
requests one after the other (vhs mode, N = 4, a new seed each) and records their round trips. Prints,
per request index, the median over the starts, and the first request's median over the median of
the last half (the warm requests). With the engines' `model_warmup` the first request should cost
about what a warm one does; without it (`--without-warmup` serves a copy of the repository with the
engines' `model_warmup` removed, benchmarks/variants.py), ONNX Runtime's first runs land on the first users.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer

from .variants import variant, without_warmup

PROMPT = "a photo of a red circle left of a blue square"


def first_requests_ms(repository: Path, requests: int, mode: str, build_dir: Path) -> list[float]:
    """Round trips (ms) of the first `requests` requests after one fresh start of the server."""
    with TritonServer(repository, build_dir=build_dir) as server, VHSClient(server.grpc_url) as client:
        times = []
        for seed in range(requests):
            start = time.perf_counter()
            client.generate(PROMPT, 4, seed, mode)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--mode", default="vhs")
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    parser.add_argument(
        "--without-warmup", action="store_true", help="serve a copy without the engines' model_warmup"
    )
    args = parser.parse_args(argv)
    served = (
        variant(args.model_repository, without_warmup)
        if args.without_warmup
        else contextlib.nullcontext(args.model_repository)
    )
    with served as repository:
        runs = [
            first_requests_ms(repository, args.requests, args.mode, args.build_dir)
            for _ in range(args.starts)
        ]
    per_index = [statistics.median(run[index] for run in runs) for index in range(args.requests)]
    warm = statistics.median(per_index[args.requests // 2 :])
    warmup = "without" if args.without_warmup else "with"
    print(f"{args.model_repository} ({warmup} model_warmup): {args.starts} starts, {args.mode} N = 4")
    print("  median ms per request index over the starts:")
    print("  " + "  ".join(f"#{index + 1} {ms:.1f}" for index, ms in enumerate(per_index)))
    print(f"  first / warm: {per_index[0] / warm:.2f} (first {per_index[0]:.1f} ms, warm {warm:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
