"""BUDGET_MS: serve the largest N whose predicted request time fits the client's time budget.

The orchestrator hands every request to `BudgetPlanner.plan` after validation: a request with a
budget gets N = the largest N up to its cap (NUM_CANDIDATES, or the preset's max_candidates) that
the latency model (`latency_model.py`) predicts to fit, or N = 1 when not even one candidate fits
(its `predicted_ms` then exceeds the budget, and the response says so). `timed` wraps a request's
steps so that every finished request, with or without a budget, teaches the model.

The model needs measurements before it can predict. The first budget request of a mode the model
cannot yet predict runs the mode's calibration first, through the same engines (the sync BLS runner,
under either step driver): the request itself at N = 1 and N = max_candidates, `CALIBRATION_ROUNDS`
times each (BLS cannot be used in a Python model's `initialize`, so this is the earliest moment).
That one request takes the calibration's time on top of its own, which its own measured time leaves
out.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..best_of_n import BestOfN, Steps, run_steps
from ..modes import MODES
from ..request import GenerationRequest
from .latency_model import LatencyModel

CALIBRATION_ROUNDS = 3  # a median of three ignores the one cold call of a fresh engine


class BudgetPlanner:
    """Chooses N for budget requests and keeps the latency model up to date."""

    def __init__(self, best_of_n: BestOfN, max_candidates: int, model: LatencyModel | None = None):
        self.best_of_n = best_of_n
        self.max_candidates = max_candidates
        self.model = model if model is not None else LatencyModel()

    def needs_calibration(self, generation: GenerationRequest) -> bool:
        """Whether `generation` has a budget that the model cannot yet plan for: some N up to its cap
        in its mode cannot be predicted."""
        return generation.budget_ms is not None and not self.model.is_calibrated(
            generation.mode, generation.num_candidates
        )

    def plan(self, generation: GenerationRequest) -> GenerationRequest:
        """`generation` with N chosen for its budget (unchanged without one) and the prediction at
        that N in `predicted_ms`; calibrate first where `needs_calibration`."""
        if generation.budget_ms is None:
            return generation
        num_candidates, predicted_ms = self.model.largest_fitting(
            generation.mode, generation.budget_ms, generation.num_candidates
        )
        return dataclasses.replace(generation, num_candidates=num_candidates, predicted_ms=predicted_ms)

    def calibrate(self, generation: GenerationRequest, run: Any) -> None:
        """Measure `generation`'s mode at the smallest and the largest N (the request's own prompt
        and seed), `CALIBRATION_ROUNDS` times each, with `run(engine, **inputs)` (the sync BLS runner);
        the outputs are discarded."""
        mode = MODES[generation.mode]
        sizes = [1, self.max_candidates]
        if mode.engine_rows(1) == mode.engine_rows(self.max_candidates):  # N changes no batch: once is enough
            sizes = [1]
        for _ in range(CALIBRATION_ROUNDS):
            for num_candidates in sizes:
                probe = dataclasses.replace(generation, num_candidates=num_candidates, budget_ms=None)
                run_steps(self.timed(probe, self.best_of_n.steps(probe), time.perf_counter()), run)

    def timed(self, generation: GenerationRequest, steps: Steps, started: float) -> Steps:
        """`steps` of `generation`, whose time since `started` (time.perf_counter() seconds) and
        TIMINGS the model learns when they finish; the output carries that time in `request_ms`.
        Works under both step drivers."""
        output = yield from steps
        request_ms = (time.perf_counter() - started) * 1e3
        self.model.observe(generation.mode, generation.num_candidates, output.timings_ms, request_ms)
        return dataclasses.replace(output, request_ms=request_ms)
