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

Every `increment` or `set` of a Python-backend metric is a round trip from the stub to the server.
The served models therefore add what they count to a local tally (`Tally`) and a daemon thread
sends it every `FLUSH_INTERVAL_S`, one update per metric that changed: the request path makes no
metric round trip, and the metrics port lags the requests by at most about that interval. With
`flush_interval_s=0` (the default, used by the unit tests) every record is sent at once.
"""

from __future__ import annotations

import threading
from typing import Any

from ..best_of_n import GenerationOutput
from ..request import GenerationRequest

# How often the served models send their tallied metrics to the server (seconds).
FLUSH_INTERVAL_S = 0.25

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


class Tally:
    """Counter increments and gauge values waiting to be sent, per key; `send` makes one update per key.

    metric(key): the pb_utils Metric of a key (made on first use). flush_interval_s > 0 starts a
    daemon thread that sends every interval; 0 sends at every `add`.
    """

    def __init__(self, metric: Any, flush_interval_s: float = 0.0):
        self.metric = metric
        self.flush_interval_s = flush_interval_s
        self.lock = threading.Lock()
        self.increments: dict[Any, float] = {}
        self.gauges: dict[Any, float] = {}
        self.stopped = threading.Event()
        if flush_interval_s > 0:
            threading.Thread(target=self._send_periodically, name="vhs-metrics", daemon=True).start()

    def add(self, increments: dict[Any, float], gauges: dict[Any, float] | None = None) -> None:
        """Tally counter `increments` and gauge values ({key: amount or value}) in one go."""
        with self.lock:
            tallied = self.increments
            for key, amount in increments.items():
                tallied[key] = tallied.get(key, 0.0) + amount
            if gauges:
                self.gauges.update(gauges)
        if self.flush_interval_s <= 0:
            self.send()

    def send(self) -> None:
        """Send everything tallied since the last send (one increment or set per metric)."""
        with self.lock:
            increments, self.increments = self.increments, {}
            gauges, self.gauges = self.gauges, {}
        for key, amount in increments.items():
            self.metric(key).increment(amount)
        for key, value in gauges.items():
            self.metric(key).set(value)

    def close(self) -> None:
        """Stop the thread and send what is left (the model's `finalize`)."""
        self.stopped.set()
        self.send()

    def _send_periodically(self) -> None:
        while not self.stopped.wait(self.flush_interval_s):
            self.send()


class EngineMetrics:
    """The compute-time counter of one engine model (labelled with the engine's name)."""

    def __init__(self, pb_utils: Any, engine: str, flush_interval_s: float = 0.0):
        # the family must outlive its metric (Triton refuses to count into a deleted family)
        self.family = _family(pb_utils, *ENGINE_COMPUTE_FAMILY)
        self.compute_us = self.family.Metric(labels={"engine": engine})
        self.tally = Tally(lambda _: self.compute_us, flush_interval_s)

    def record_compute(self, seconds: float) -> None:
        """Add one ONNX Runtime run of `seconds` (all requests of one execution together)."""
        self.tally.add({"compute_us": seconds * 1e6})

    def close(self) -> None:
        self.tally.close()


class OrchestratorMetrics:
    """The metric families of the `vhs` model; one Metric per label set, made on first use."""

    def __init__(self, pb_utils: Any, flush_interval_s: float = 0.0):
        self.families = {key: _family(pb_utils, *spec) for key, spec in FAMILIES.items()}
        self.metrics: dict[tuple, Any] = {}
        self.tally = Tally(self._metric, flush_interval_s)

    def _metric(self, key: tuple) -> Any:
        """The Metric of key (family, (label, value), ...), made on first use."""
        if key not in self.metrics:
            family, *labels = key
            self.metrics[key] = self.families[family].Metric(labels=dict(labels))
        return self.metrics[key]

    def record(self, request: GenerationRequest, output: GenerationOutput) -> None:
        """Count one answered request: its mode, candidates, stage times and the winner's P(yes)."""
        mode = ("mode", request.mode)
        increments = {("requests", mode): 1, ("candidates", mode): request.num_candidates}
        for stage, milliseconds in output.timings_ms.items():
            increments[("stage_us", mode, ("stage", stage))] = milliseconds * 1e3
        gauges = {}
        if len(output.scores):
            gauges[("selected_yes", mode)] = float(output.scores[output.selected])
        self.tally.add(increments, gauges)

    def record_failure(self, error: Exception) -> None:
        """Count one request answered with an error, labelled with the exception's class."""
        self.tally.add({("failures", ("error", type(error).__name__)): 1})

    def close(self) -> None:
        self.tally.close()
