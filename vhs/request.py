"""Validation of a generation request, shared by the reference pipeline and the Triton orchestrator.

Every error is a ValueError whose message starts with the protocol's field name, which the
orchestrator returns to the client as Triton's INVALID_ARG.
"""

from __future__ import annotations

from dataclasses import dataclass

from .noise import check_seed
from .preset_config import PresetConfig
from .protocol import DEFAULT_MODE, DEFAULT_SEED, MODES


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    num_candidates: int  # candidates generated: 1 in mode "none" (Best-of-1 is candidate 0)
    seed: int
    mode: str


def parse_request(
    config: PresetConfig,
    prompt: str,
    num_candidates: int | None = None,
    seed: int | None = None,
    mode: str | None = None,
) -> GenerationRequest:
    """Fill defaults from the preset and check ranges; raises ValueError naming the field."""
    mode = DEFAULT_MODE if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {', '.join(MODES)}, got {mode!r}")
    num_candidates = config.default_candidates if num_candidates is None else num_candidates
    if (
        isinstance(num_candidates, bool)
        or not isinstance(num_candidates, int)
        or not (1 <= num_candidates <= config.max_candidates)
    ):
        raise ValueError(
            f"NUM_CANDIDATES must be an integer in [1, {config.max_candidates}], got {num_candidates!r}"
        )
    seed = DEFAULT_SEED if seed is None else seed
    check_seed(seed)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("PROMPT must be a non-empty string")
    return GenerationRequest(prompt, 1 if mode == "none" else num_candidates, int(seed), mode)
