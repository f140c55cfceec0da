"""Validation of a generation request, shared by the reference pipeline and the Triton orchestrator.

Each field is checked here once, before any engine runs: the prompt by tokenizing it (its character
and token limits), NUM_CANDIDATES against the preset, SEED against its range, MODE against the mode
table, BUDGET_MS for a positive, finite number. Every failure is an `InvalidRequest` whose message
starts with the protocol's field name, which the orchestrator returns to the client as Triton's
INVALID_ARG.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .errors import InvalidRequest
from .modes import DEFAULT_MODE, MODES
from .noise import check_seed
from .preset_config import PresetConfig
from .prompting import PromptTokenizer, PromptTokens
from .protocol import DEFAULT_SEED


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    tokens: PromptTokens  # the prompt tokenized for the text encoder and the verifier question
    num_candidates: int  # N; in mode "none" candidate 0 is the answer and only it is generated
    seed: int
    mode: str  # a key of vhs.modes.MODES
    tokenize_ms: float  # time spent tokenizing during validation, reported as the "tokenize" stage
    # With a time budget, num_candidates is the cap: the served path generates the largest N up to it
    # whose predicted time fits (vhs/runtime/budget.py) and records that prediction in predicted_ms.
    budget_ms: float | None = None
    predicted_ms: float | None = None


def parse_request(
    config: PresetConfig,
    prompt_tokenizer: PromptTokenizer,
    prompt: str,
    num_candidates: int | None = None,
    seed: int | None = None,
    mode: str | None = None,
    budget_ms: float | None = None,
) -> GenerationRequest:
    """Fill defaults from the preset, check every field once; raises InvalidRequest naming the field.

    With `budget_ms` and no `num_candidates`, the cap on N is the preset's max_candidates (the
    budget alone decides), not its default.
    """
    mode = DEFAULT_MODE if mode is None else mode
    if mode not in MODES:
        raise InvalidRequest(f"MODE must be one of {', '.join(MODES)}, got {mode!r}")
    if mode not in config.modes:
        parts = ", ".join(f"{part}/" for part in MODES[mode].folders)
        raise InvalidRequest(
            f"MODE {mode!r} is not served by preset {config.name!r}: its verifier ({parts}) is not in the "
            f"preset's verifier folder; served modes: {', '.join(config.modes)}"
        )
    if budget_ms is not None:
        check_budget_ms(budget_ms)
    if num_candidates is None:
        num_candidates = config.default_candidates if budget_ms is None else config.max_candidates
    if (
        isinstance(num_candidates, bool)
        or not isinstance(num_candidates, int)
        or not (1 <= num_candidates <= config.max_candidates)
    ):
        raise InvalidRequest(
            f"NUM_CANDIDATES must be an integer in [1, {config.max_candidates}], got {num_candidates!r}"
        )
    seed = DEFAULT_SEED if seed is None else seed
    check_seed(seed)
    start = time.perf_counter()
    tokens = prompt_tokenizer(prompt)
    tokenize_ms = (time.perf_counter() - start) * 1e3
    return GenerationRequest(prompt, tokens, num_candidates, int(seed), mode, tokenize_ms, budget_ms)


def check_budget_ms(budget_ms: float) -> None:
    """BUDGET_MS must be a positive, finite number of milliseconds; raises InvalidRequest otherwise."""
    if (
        isinstance(budget_ms, bool)
        or not isinstance(budget_ms, (int, float))
        or not math.isfinite(budget_ms)
        or budget_ms <= 0
    ):
        raise InvalidRequest(
            f"BUDGET_MS must be a positive, finite number of milliseconds, got {budget_ms!r}"
        )
