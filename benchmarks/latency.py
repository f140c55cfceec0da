"""Median request time of several runners at several N, interleaved so machine noise hits every
runner alike: `make bench` (served vs in-process, every mode) and `make bench-budget` use it.
Ratios of these medians, not absolute times, are what carry over between machines.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from tqdm import tqdm

PROMPTS = (
    "a photo of a red circle",
    "a photo of a circle and a square",
    "a photo of three triangles",
    "a photo of a blue square left of a green ring",
)


def measure(
    runners: dict[str, Callable[[str, int], None]],
    candidate_counts: Sequence[int],
    repeats: int,
    prompts: Sequence[str] = PROMPTS,
) -> dict[tuple[str, int], float]:
    """{(runner, N): median milliseconds}; each step runs every runner once on the same prompt."""
    samples: dict[tuple[str, int], list[float]] = {}
    steps = [(n, r, p) for n in candidate_counts for r in range(repeats) for p in prompts]
    for n, _, prompt in tqdm(steps, desc="latency", unit="round"):
        for name, run in runners.items():
            start = time.perf_counter()
            run(prompt, n)
            samples.setdefault((name, n), []).append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in samples.items()}
