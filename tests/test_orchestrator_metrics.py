"""The orchestrator's and the engines' custom metrics (`pb_utils.MetricFamily`): counted per request in
unit tests, and exposed by the real Triton server on its metrics port beside the `nv_*` metrics the
autoscaler uses, whose health endpoints are the ones the Helm chart probes."""

import time
import urllib.request
from dataclasses import dataclass, field

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vhs.best_of_n import GenerationOutput
from vhs.client.vhs_client import VHSClient, VHSRequestError
from vhs.launcher.server import TritonServer
from vhs.modes import MODES
from vhs.request import GenerationRequest
from vhs.runtime.metrics import ENGINE_COMPUTE_FAMILY, FAMILIES, EngineMetrics, OrchestratorMetrics

PROMPT = "a photo of a red circle left of a blue square"
PROBE_PATHS = ("/v2/health/ready", "/v2/health/live")  # as deploy/helm/vhs-triton probes them
VHS_SUCCESS = ("nv_inference_request_success_total", (("model", "vhs"), ("version", "1")))


@dataclass
class StandInMetric:
    labels: dict
    value: float = 0.0

    def increment(self, amount):
        assert amount >= 0, "counters only grow"
        self.value += amount

    def set(self, value):
        self.value = value


@dataclass
class StandInFamily:
    name: str
    description: str
    kind: str
    metrics: list = field(default_factory=list)

    def Metric(self, labels):  # noqa: N802 -- pb_utils' spelling
        self.metrics.append(StandInMetric(labels))
        return self.metrics[-1]


class StandInPbUtils:
    """The part of `triton_python_backend_utils` the metrics use."""

    class MetricFamily(StandInFamily):
        COUNTER = "counter"
        GAUGE = "gauge"


def values(metrics, family):
    return {tuple(sorted(m.labels.items())): m.value for m in metrics.families[family].metrics}


def test_each_request_counts_its_mode_candidates_stage_times_and_winner():
    metrics = OrchestratorMetrics(StandInPbUtils)
    assert {f.name for f in metrics.families.values()} == {name for name, _, _ in FAMILIES.values()}
    output = GenerationOutput(
        image=np.zeros((2, 2, 3), np.uint8),
        scores=np.array([0.2, 0.9, 0.4], np.float32),
        selected=1,
        timings_ms={"dit_prefix": 2.5, "llm": 1.0},
    )
    for _ in range(2):
        metrics.record(GenerationRequest(PROMPT, None, 3, 0, "vhs", 0.0), output)
    metrics.record(
        GenerationRequest(PROMPT, None, 1, 0, "none", 0.0), GenerationOutput(output.image, np.zeros(0), 0, {})
    )
    metrics.record_failure(ValueError("NUM_CANDIDATES must be ..."))

    assert values(metrics, "requests") == {(("mode", "vhs"),): 2, (("mode", "none"),): 1}
    assert values(metrics, "candidates") == {(("mode", "vhs"),): 6, (("mode", "none"),): 1}
    assert values(metrics, "stage_us") == {
        (("mode", "vhs"), ("stage", "dit_prefix")): 5000.0,
        (("mode", "vhs"), ("stage", "llm")): 2000.0,
    }
    assert values(metrics, "selected_yes") == {(("mode", "vhs"),): pytest.approx(0.9)}
    assert values(metrics, "failures") == {(("error", "ValueError"),): 1}
    assert metrics.families["selected_yes"].kind == "gauge"


def test_an_engine_counts_the_microseconds_of_its_onnx_runtime_runs():
    metrics = EngineMetrics(StandInPbUtils, "dit_prefix")
    metrics.record_compute(0.0025)
    metrics.record_compute(0.001)
    assert metrics.family.name == ENGINE_COMPUTE_FAMILY[0] and metrics.family.kind == "counter"
    assert [(m.labels, m.value) for m in metrics.family.metrics] == [
        ({"engine": "dit_prefix"}, pytest.approx(3500.0))
    ]


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted_all(samples, warm_ups):
    """Whether the scrape holds the 3 requests of the test below in Triton's and the orchestrator's
    counters (Triton counts the `vhs` instances' `warm_ups` as successes too, the orchestrator not)."""
    answered = sum(value for (name, _), value in samples.items() if name == "vhs_requests_total")
    failed = sum(value for (name, _), value in samples.items() if name == "vhs_request_failures_total")
    return samples.get(VHS_SUCCESS) == warm_ups + 3 and (answered, failed) == (2, 1)


@pytest.mark.server
def test_the_server_exposes_the_orchestrator_metrics_and_answers_the_charts_probes(exported_tiny):
    with TritonServer(exported_tiny / "model_repository", build_dir="build/triton") as server:
        for path in PROBE_PATHS:
            with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=5) as response:
                assert response.status == 200, path
        warm_ups = scrape(server.metrics_url)[VHS_SUCCESS]  # one per vhs instance, before it was ready
        assert warm_ups == 4
        with VHSClient(server.grpc_url) as client:
            result = client.generate(PROMPT, 3, 0, "vhs")
            client.generate(PROMPT, 2, 0, "clip")
            with pytest.raises(VHSRequestError):
                client.generate(PROMPT, 99, 0, "vhs")
        # Triton may record a request's statistics just after its response has gone out, and the
        # models send their own metrics every FLUSH_INTERVAL_S: wait for all 3 requests in both.
        deadline = time.monotonic() + 10
        while (
            not counted_all(samples := scrape(server.metrics_url), warm_ups) and time.monotonic() < deadline
        ):
            time.sleep(0.2)

    assert samples[("vhs_requests_total", (("mode", "vhs"),))] == 1
    assert samples[("vhs_requests_total", (("mode", "clip"),))] == 1
    assert samples[("vhs_candidates_total", (("mode", "vhs"),))] == 3
    assert samples[("vhs_candidates_total", (("mode", "clip"),))] == 2
    failures = [value for (name, _), value in samples.items() if name == "vhs_request_failures_total"]
    assert failures == [1]
    for stage, milliseconds in result.timings_ms.items():
        recorded_us = samples[("vhs_stage_duration_us_total", (("mode", "vhs"), ("stage", stage)))]
        assert recorded_us == pytest.approx(milliseconds * 1e3, rel=1e-3)
    # each engine's own ONNX Runtime time: part of what Triton counts as the model's compute
    for engine in {*MODES["vhs"].engines, *MODES["clip"].engines}:
        compute_us = samples[(ENGINE_COMPUTE_FAMILY[0], (("engine", engine),))]
        triton_us = samples[
            ("nv_inference_compute_infer_duration_us_total", (("model", engine), ("version", "1")))
        ]
        assert 0 < compute_us <= triton_us, engine
    selected_yes = samples[("vhs_selected_yes_probability", (("mode", "vhs"),))]
    assert selected_yes == pytest.approx(float(result.scores[result.selected]), rel=1e-5)
    # The autoscaler's inputs (deploy/helm/prometheus-adapter-values.yaml) are on the same port
    # (prometheus_client's parser spells every counter sample with `_total`; Prometheus does not).
    vhs_model = (("model", "vhs"), ("version", "1"))
    assert ("nv_inference_queue_duration_us_total", vhs_model) in samples
    # Triton counts a request the Python model answered with an error as a success of the model and
    # no failure: only vhs_request_failures_total sees the bad request.
    assert samples[VHS_SUCCESS] == warm_ups + 3
    triton_failures = [
        value
        for (name, labels), value in samples.items()
        if name == "nv_inference_request_failure_total" and ("model", "vhs") in labels
    ]
    assert triton_failures and sum(triton_failures) == 0
