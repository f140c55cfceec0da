"""How long a request of a given mode and N will take: the latency model behind BUDGET_MS.

Every timed stage of a request (the keys of its TIMINGS: `tokenize`, each engine) costs a fixed time
plus a time per row it is handed; the rows come from the mode table (`VerifierMode.engine_rows`: N
for the stages every generated candidate goes through, 1 for the text encoder and the winner's
stages). What the orchestrator spends outside the stages (reading the request, planning, noise,
slicing) is one more stage per mode, `<mode> overhead`, with one row per generated candidate.

The model learns from the requests it is shown (`observe`):

- per stage and row count, the median of the last `stage_window` measured times. A median, so one
  slow call on a shared machine does not move it; a row count counts only once it has
  `MIN_GROUP_SAMPLES` times, so a slow call at a row count seen for the first time cannot either. A
  window per row count, so the model follows a machine that becomes busier or idler while the
  row counts served rarely, such as the calibration's, keep their own measurements;
- per stage, the least-squares line through those medians: the fixed cost (intercept) and the
  per-row cost (slope, never negative, so a larger N is never predicted to be cheaper);
- for the whole request, the ratio of each measured request time to the lines' prediction made
  before it ran, over the last `residual_window` requests; the prediction is multiplied by the
  `quantile` of these ratios. Slow stages of one request tend to come together (another process
  took the cores), so the spread is measured on whole requests, not added up per stage.

`predict_ms(mode, n)` is therefore a high quantile of the request time, not its mean: a budget that
fits the prediction is met by about `quantile` of the requests while the machine behaves as it did
over the window. Everything is cached between observations: planning a request costs well under a
millisecond.
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np

from ..modes import MODES

STAGE_WINDOW = 16
RESIDUAL_WINDOW = 128
QUANTILE = 0.97
# A row count of a stage enters its line once measured this often (the median of three ignores one
# slow call).
MIN_GROUP_SAMPLES = 3
# Until a few requests have been measured against a prediction, the margin is at least this.
MIN_RESIDUALS = 5
PRIOR_MARGIN = 1.25


def overhead_stage(mode: str) -> str:
    """The pseudo-stage of a mode's time outside its timed stages."""
    return f"{mode} overhead"


def stage_rows(mode: str, stages: tuple[str, ...], num_candidates: int) -> dict[str, int]:
    """Rows each of `stages` handles in a request for `num_candidates` in `mode`: an engine's batch
    size from the mode table, the generated candidates for the overhead, 1 for anything else
    (tokenize)."""
    table = MODES[mode]
    rows = table.engine_rows(num_candidates)
    rows[overhead_stage(mode)] = table.generated_candidates(num_candidates)
    return {stage: rows.get(stage, 1) for stage in stages}


class LatencyModel:
    """Per-stage fixed + per-row costs and a whole-request margin, learned from measured requests."""

    def __init__(
        self,
        quantile: float = QUANTILE,
        stage_window: int = STAGE_WINDOW,
        residual_window: int = RESIDUAL_WINDOW,
    ):
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile = quantile
        self.stage_window = stage_window
        self._samples: dict[str, dict[int, deque[float]]] = {}  # stage -> rows -> recent times (ms)
        self._stages: dict[str, tuple[str, ...]] = {}  # mode -> the stages its requests report
        self._ratios: deque[float] = deque(maxlen=residual_window)
        # Derived from the samples, dropped when they change.
        self._medians: dict[str, dict[int, float]] = {}
        self._costs: dict[str, tuple[float, float]] = {}
        self._margin: float | None = None

    def observe(
        self, mode: str, num_candidates: int, timings_ms: dict[str, float], request_ms: float
    ) -> None:
        """Learn from one finished request.

        timings_ms: its TIMINGS ({stage: ms}); request_ms: its whole time in the orchestrator.
        """
        if self.can_predict(mode, num_candidates):  # the margin is measured on predictions made before
            self._ratios.append(request_ms / self.typical_ms(mode, num_candidates))
            self._margin = None
        stages = (*timings_ms, overhead_stage(mode))
        self._stages[mode] = tuple(dict.fromkeys((*self._stages.get(mode, ()), *stages)))
        times = {**timings_ms, overhead_stage(mode): max(request_ms - sum(timings_ms.values()), 0.0)}
        for stage, rows in stage_rows(mode, stages, num_candidates).items():
            by_rows = self._samples.setdefault(stage, {})
            by_rows.setdefault(rows, deque(maxlen=self.stage_window)).append(times[stage])
            self._medians.pop(stage, None)
            self._costs.pop(stage, None)

    def medians(self, stage: str) -> dict[int, float]:
        """{rows: median ms} of `stage` over the row counts measured at least MIN_GROUP_SAMPLES times."""
        if stage not in self._medians:
            self._medians[stage] = {
                rows: statistics.median(times)
                for rows, times in sorted(self._samples.get(stage, {}).items())
                if len(times) >= MIN_GROUP_SAMPLES
            }
        return self._medians[stage]

    def can_predict(self, mode: str, num_candidates: int) -> bool:
        """Whether every stage of `mode` has been measured at this N's rows, or at two row counts
        (a line to read it from)."""
        stages = self._stages.get(mode)
        if not stages:
            return False
        for stage, rows in stage_rows(mode, stages, num_candidates).items():
            medians = self.medians(stage)
            if rows not in medians and len(medians) < 2:
                return False
        return True

    def is_calibrated(self, mode: str, max_candidates: int) -> bool:
        """Whether every N from 1 to `max_candidates` can be predicted in `mode`."""
        return all(self.can_predict(mode, n) for n in range(1, max_candidates + 1))

    def stage_cost(self, stage: str) -> tuple[float, float]:
        """(fixed ms, ms per row) of `stage`: the least-squares line through its per-row-count
        medians; a stage measured at one row count costs its median whatever the rows."""
        if stage not in self._costs:
            # a handful of points, refitted after every request: plain floats, not numpy's overhead
            medians = self.medians(stage)
            mean_rows = sum(medians) / len(medians)
            mean_ms = sum(medians.values()) / len(medians)
            per_row = 0.0
            if len(medians) > 1:
                spread = sum((rows - mean_rows) ** 2 for rows in medians)
                covariance = sum((rows - mean_rows) * (ms - mean_ms) for rows, ms in medians.items())
                per_row = max(covariance / spread, 0.0)
            self._costs[stage] = (mean_ms - per_row * mean_rows, per_row)
        return self._costs[stage]

    def typical_ms(self, mode: str, num_candidates: int) -> float:
        """The sum of the stage lines at this N's rows: a typical request, before the margin."""
        if not self.can_predict(mode, num_candidates):
            raise ValueError(f"mode {mode!r} at N = {num_candidates} has not been measured enough to predict")
        total = 0.0
        for stage, rows in stage_rows(mode, self._stages[mode], num_candidates).items():
            fixed, per_row = self.stage_cost(stage)
            total += max(fixed + per_row * rows, 0.0)
        return total

    def margin(self) -> float:
        """The factor from a typical request to the `quantile` of measured requests."""
        if self._margin is None:
            if len(self._ratios) < MIN_RESIDUALS:
                self._margin = max([PRIOR_MARGIN, *self._ratios])
            else:
                self._margin = float(np.quantile(np.array(self._ratios), self.quantile))
        return self._margin

    def predict_ms(self, mode: str, num_candidates: int) -> float:
        """The predicted `quantile` of the time of a request in `mode` for `num_candidates`, in ms."""
        return self.typical_ms(mode, num_candidates) * self.margin()

    def largest_fitting(self, mode: str, budget_ms: float, max_candidates: int) -> tuple[int, float]:
        """(N, predicted ms): the largest N <= max_candidates whose prediction fits `budget_ms`, or
        N = 1 when none does (its prediction then exceeds the budget)."""
        for n in range(max_candidates, 0, -1):
            predicted = self.predict_ms(mode, n)
            if predicted <= budget_ms or n == 1:
                return n, predicted
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
