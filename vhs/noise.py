"""Per-candidate noise: candidate i of a request is a function of (seed, i) only.

It does not depend on N, on batching or on the device, so candidate i is the same image whatever N
is, and the served path (numpy in the orchestrator) and the reference pipeline draw identical noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidRequest

MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> None:
    """Raise InvalidRequest naming SEED unless it is an integer in [0, 2**63 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"SEED must be an integer in [0, {MAX_SEED}], got {seed!r}")


def candidate_noise(seed: int, candidate_indices: Sequence[int], latent_shape: Sequence[int]) -> np.ndarray:
    """Standard-normal noise (len(candidate_indices), *latent_shape), float32, one row per candidate.

    `seed` is a validated one (`check_seed`, part of request validation).
    """
    return np.stack(
        [
            np.random.default_rng([int(seed), int(index)]).standard_normal(
                tuple(latent_shape), dtype=np.float32
            )
            for index in candidate_indices
        ]
    )
