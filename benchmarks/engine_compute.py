"""Each engine's own compute per request, read from the server's metrics port.

An engine model on the Python backend counts the time inside ONNX Runtime's `run`
(`vhs_engine_compute_duration_us_total{engine}`, vhs/runtime/metrics.py); Triton's `compute_infer`
of the same model also holds the stub's exchange of tensors and the batching around the run. Two
snapshots around a span of requests to the `vhs` model give the graph's compute per request, which
the stage split takes as an engine's compute (the rest of its time is overhead):

    before = read_compute_counters(server.metrics_url)
    ...  # requests to vhs
    per_request_us = compute_per_request_us(before, read_compute_counters(server.metrics_url))

Every engine a mode calls is called once per request (`vhs.best_of_n`), so per `vhs` request is per
engine request. Engines without the metric (Triton's onnxruntime or tensorrt_plan backends) are
absent from the result.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from vhs import protocol as P
from vhs.runtime.metrics import FLUSH_INTERVAL_S

ENGINE_COMPUTE_METRIC = "vhs_engine_compute_duration_us_total"
REQUESTS_METRIC = "nv_inference_request_success_total"  # Triton's, per model
SETTLE_S = 2 * FLUSH_INTERVAL_S  # the engines' counters have reached the metrics port after this


@dataclass(frozen=True)
class ComputeCounters:
    """engine_us: {engine: cumulative microseconds inside ONNX Runtime}; requests: the `vhs` model's
    answered requests so far."""

    engine_us: dict[str, float]
    requests: float


def parse_compute_counters(text: str) -> ComputeCounters:
    """The counters in a metrics page (Prometheus text format)."""
    engine_us, requests = {}, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == ENGINE_COMPUTE_METRIC:
                engine_us[sample.labels["engine"]] = sample.value
            elif sample.name == REQUESTS_METRIC and sample.labels.get("model") == P.ORCHESTRATOR_MODEL:
                requests += sample.value
    return ComputeCounters(engine_us, requests)


def read_compute_counters(metrics_url: str, settle_s: float = SETTLE_S) -> ComputeCounters:
    """Snapshot `http://host:port/metrics` once the engines have sent what they tallied: they send
    their counters every FLUSH_INTERVAL_S (vhs/runtime/metrics.py), so the snapshot waits `settle_s`
    after the last request (call it when no request is in flight)."""
    time.sleep(settle_s)
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return parse_compute_counters(response.read().decode())


def compute_per_request_us(before: ComputeCounters, after: ComputeCounters) -> dict[str, float]:
    """{engine: microseconds of ONNX Runtime compute per `vhs` request} between two snapshots, for the
    engines that ran; {} when no request was answered in between."""
    requests = after.requests - before.requests
    if requests <= 0:
        return {}
    return {
        engine: (total - before.engine_us.get(engine, 0.0)) / requests
        for engine, total in after.engine_us.items()
        if total > before.engine_us.get(engine, 0.0)
    }
