"""The project's own Prometheus metrics, beside Triton's `nv_*` ones on the metrics port.

Created through the Python backend's custom-metrics API (`pb_utils.MetricFamily`), passed in as
`pb_utils` so this is unit-tested without a server. Counters are cumulative, like Triton's own, so a
rate over a window gives per-second figures and a ratio of two rates gives per-request ones.

The orchestrator (`OrchestratorMetrics`):

    vhs_requests_total{mode}                  requests answered, per verifier mode
    vhs_request_failures_total{error}         requests answered with an error, by exception class
                                              (InvalidRequest: bad input, sent back as INVALID_ARG)
    vhs_candidates_total{mode}                candidates asked for, NUM_CANDIDATES (/ requests = N per
                                              request; mode none generates candidate 0 only)
    vhs_stage_duration_us_total{mode,stage}   time in each stage (/ requests = per-stage latency)
    vhs_selected_yes_probability{mode}        P(yes) of the last selected candidate (gauge)

Each engine model on the Python backend (`EngineMetrics`):

    vhs_engine_compute_duration_us_total{engine}  time inside ONNX Runtime's `run` alone: with
                                                  Triton's per-model statistics (queue, compute
                                                  input/infer/output) it splits a stage into the
                                                  graph's compute and everything around it
                                                  (`make bench`'s stage split)
"""

from __future__ import annotations

from typing import Any

from ..best_of_n import GenerationOutput
from ..request import GenerationRequest

FAMILIES = {
    "requests": ("vhs_requests_total", "Requests answered, per verifier mode", "COUNTER"),
    "failures": (
        "vhs_request_failures_total",
        "Requests answered with an error, per exception class",
        "COUNTER",
    ),
    "candidates": (
        "vhs_candidates_total",
        "Candidates asked for (NUM_CANDIDATES), per verifier mode",
        "COUNTER",
    ),
    "stage_us": (
        "vhs_stage_duration_us_total",
        "Cumulative time per orchestrator stage in microseconds",
        "COUNTER",
    ),
    "selected_yes": (
        "vhs_selected_yes_probability",
        "P(yes) of the most recently selected candidate, per verifier mode",
        "GAUGE",
    ),
}


ENGINE_COMPUTE_FAMILY = (
    "vhs_engine_compute_duration_us_total",
    "Cumulative time inside the engine's ONNX Runtime run in microseconds",
    "COUNTER",
)


def _family(pb_utils: Any, name: str, description: str, kind: str) -> Any:
    return pb_utils.MetricFamily(
        name=name, description=description, kind=getattr(pb_utils.MetricFamily, kind)
    )


class EngineMetrics:
    """The compute-time counter of one engine model (labelled with the engine's name)."""

    def __init__(self, pb_utils: Any, engine: str):
        # the family must outlive its metric (Triton refuses to count into a deleted family)
        self.family = _family(pb_utils, *ENGINE_COMPUTE_FAMILY)
        self.compute_us = self.family.Metric(labels={"engine": engine})

    def record_compute(self, seconds: float) -> None:
        """Add one ONNX Runtime run of `seconds` (all requests of one execution together)."""
        self.compute_us.increment(seconds * 1e6)


class OrchestratorMetrics:
    """The metric families of the `vhs` model; one Metric per label set, made on first use."""

    def __init__(self, pb_utils: Any):
        self.families = {key: _family(pb_utils, *spec) for key, spec in FAMILIES.items()}
        self.metrics: dict[tuple, Any] = {}

    def _metric(self, family: str, **labels: str) -> Any:
        key = (family, *sorted(labels.items()))
        if key not in self.metrics:
            self.metrics[key] = self.families[family].Metric(labels=labels)
        return self.metrics[key]

    def record(self, request: GenerationRequest, output: GenerationOutput) -> None:
        """Count one answered request: its mode, candidates, stage times and the winner's P(yes)."""
        mode = request.mode
        self._metric("requests", mode=mode).increment(1)
        self._metric("candidates", mode=mode).increment(request.num_candidates)
        for stage, milliseconds in output.timings_ms.items():
            self._metric("stage_us", mode=mode, stage=stage).increment(milliseconds * 1e3)
        if len(output.scores):
            self._metric("selected_yes", mode=mode).set(float(output.scores[output.selected]))

    def record_failure(self, error: Exception) -> None:
        """Count one request answered with an error, labelled with the exception's class."""
        self._metric("failures", error=type(error).__name__).increment(1)
