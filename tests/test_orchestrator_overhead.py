"""What the orchestrator does per request beyond its engine calls, kept cheap (issue 27): the
client-cancel check is a round trip to the server, asked at most once per poll interval; metrics are
tallied in the process and sent in bulk by a thread. Unit tests on stand-ins, no server."""

import time

import pytest

from vhs.best_of_n import EngineCall
from vhs.runtime.cancellation import CANCEL_POLL_S, RequestCancelled, RequestWatch, stop_when_abandoned
from vhs.runtime.metrics import FLUSH_INTERVAL_S, Tally


class CountingRequest:
    """A python-backend request stand-in that counts the `is_cancelled()` round trips."""

    def __init__(self, timeout_us=0):
        self.polls, self.cancelled, self.timeout_us = 0, False, timeout_us

    def is_cancelled(self):
        self.polls += 1
        return self.cancelled

    def timeout(self):
        return self.timeout_us


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_cancel_round_trip_is_asked_at_the_start_then_once_per_poll_interval():
    request, clock = CountingRequest(), Clock()
    watch = RequestWatch(request, clock=clock, poll_s=0.020)
    watch.check("text_encoder")
    assert request.polls == 1, "asked before the first engine call"
    clock.now += 0.005
    watch.check("dit_prefix")
    clock.now += 0.010
    watch.check("connector")
    assert request.polls == 1, "not again within the interval"
    clock.now += 0.006  # 21 ms since the last round trip
    watch.check("llm")
    assert request.polls == 2
    request.cancelled = True
    clock.now += 0.001
    watch.check("dit_suffix")  # within the interval: not asked, so not seen yet
    clock.now += 0.020
    with pytest.raises(RequestCancelled, match="cancelled by the client before vae_decoder"):
        watch.check("vae_decoder")


def test_a_zero_poll_interval_asks_before_every_call():
    request = CountingRequest()
    watch = RequestWatch(request, clock=Clock(), poll_s=0)
    for stage in ("a", "b", "c"):
        watch.check(stage)
    assert request.polls == 3


def test_the_deadline_is_checked_at_every_call_whatever_the_poll_interval():
    request, clock = CountingRequest(timeout_us=50_000), Clock()
    watch = RequestWatch(request, clock=clock, poll_s=10.0)
    watch.check("text_encoder")
    clock.now += 0.051
    with pytest.raises(RequestCancelled, match="deadline passed before dit_prefix"):
        watch.check("dit_prefix")
    assert request.polls == 1


def test_a_request_of_six_calls_makes_fewer_round_trips_than_calls():
    """The served default: a VHS request's six engine calls, ~40 ms in all, ask the server at most
    twice whether the client is gone (it asked six times before)."""

    def six_calls():
        for engine in ("text_encoder", "dit_prefix", "connector", "llm", "dit_suffix", "vae_decoder"):
            yield EngineCall(engine, {})
        return "done"

    request, clock = CountingRequest(), Clock()
    steps = stop_when_abandoned(six_calls(), RequestWatch(request, clock=clock))
    stage_ms = {"text_encoder": 2.5, "dit_prefix": 8, "connector": 1.3, "llm": 8, "dit_suffix": 5}
    call = next(steps)
    try:
        while True:
            clock.now += stage_ms.get(call.engine, 7) / 1e3
            call = steps.send({})
    except StopIteration as finished:
        assert finished.value == "done"
    assert CANCEL_POLL_S >= 0.010
    assert 1 <= request.polls <= 2


class CountingMetric:
    def __init__(self):
        self.updates, self.value = 0, 0.0

    def increment(self, amount):
        self.updates += 1
        self.value += amount

    def set(self, value):
        self.updates += 1
        self.value = value


def test_a_tally_without_interval_sends_every_record_at_once():
    metrics = {}
    tally = Tally(lambda key: metrics.setdefault(key, CountingMetric()))
    tally.add({"requests": 1, "stage": 2.5})
    assert {key: m.value for key, m in metrics.items()} == {"requests": 1, "stage": 2.5}


def test_a_tally_with_interval_sends_one_update_per_metric_in_bulk():
    metrics = {}
    tally = Tally(lambda key: metrics.setdefault(key, CountingMetric()), flush_interval_s=3600)
    for _ in range(10):
        tally.add({"requests": 1, "stage": 2.5}, {"gauge": 0.5})
    tally.add({"requests": 1}, {"gauge": 0.75})
    assert metrics == {}, "nothing is sent on the request path"
    tally.send()
    assert {key: (m.value, m.updates) for key, m in metrics.items()} == {
        "requests": (11, 1),
        "stage": (25.0, 1),
        "gauge": (0.75, 1),
    }
    tally.add({"requests": 2})
    tally.close()
    assert (metrics["requests"].value, metrics["requests"].updates) == (13, 2)


def test_the_tally_thread_sends_within_its_interval():
    metrics = {}
    tally = Tally(lambda key: metrics.setdefault(key, CountingMetric()), flush_interval_s=0.05)
    tally.add({"requests": 3})
    deadline = time.monotonic() + 5
    while "requests" not in metrics and time.monotonic() < deadline:
        time.sleep(0.01)
    tally.close()
    assert metrics["requests"].value == 3
    assert 0 < FLUSH_INTERVAL_S <= 1.0, "the metrics port lags the requests by about this much"


# --- the warm-up calibrates the latency model (BUDGET_MS from the first request) ---------------------


@pytest.mark.slow  # calibrates every mode
def test_the_warm_up_request_calibrates_every_served_mode_so_no_budget_request_pays(
    tiny_pipeline, tiny_preset
):
    from fakes import FakeRequest, make_orchestrator, outputs_of, request_tensors

    from vhs.modes import MODES
    from vhs.protocol import NUM_CANDIDATES_USED

    calls = []
    orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, calls)
    orchestrator.warmup_requests = 1
    model, max_n = orchestrator.budget.model, orchestrator.config.max_candidates
    # Triton's warm-up sample: an empty PROMPT (zero data), no other input
    warm = orchestrator.execute([FakeRequest(request_tensors(prompt=b""))])[0]
    assert not warm.has_error() and orchestrator.warmup_requests == 0
    for mode in orchestrator.config.modes:
        assert model.is_calibrated(mode, max_n), mode
    calls.clear()
    for mode in orchestrator.config.modes:
        request = FakeRequest(request_tensors(mode=mode.encode(), budget_ms=1e6))
        assert outputs_of(orchestrator.execute([request])[0])[NUM_CANDIDATES_USED].tolist() == [max_n]
    assert len(calls) == sum(len(MODES[mode].engines) for mode in orchestrator.config.modes), (
        "no budget request calibrated"
    )
    # a client's empty PROMPT after the warm-up is a client's mistake again
    refused = orchestrator.execute([FakeRequest(request_tensors(prompt=b""))])[0]
    assert refused.error().code() == "INVALID_ARG"


@pytest.mark.slow  # calibrates every mode
def test_the_warm_up_waits_for_engines_that_are_still_loading(tiny_pipeline, tiny_preset):
    from fakes import FakeRequest, make_orchestrator, request_tensors

    from vhs.errors import EngineError

    orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, [])
    bls, refusals = orchestrator.engines, []

    def loading_for_three_calls(engine, **inputs):
        if len(refusals) < 3:
            refusals.append(engine)
            raise EngineError(f"engine model '{engine}' is unavailable: model is not ready", True)
        return bls(engine, **inputs)

    orchestrator.engines = loading_for_three_calls
    orchestrator.warmup_requests = 1
    orchestrator.execute([FakeRequest(request_tensors(prompt=b""))])
    assert len(refusals) == 3
    assert orchestrator.budget.model.is_calibrated("vhs", orchestrator.config.max_candidates)


def test_an_engine_that_never_loads_leaves_the_instance_uncalibrated_not_failed(tiny_pipeline, tiny_preset):
    from fakes import make_orchestrator, outputs_of

    from vhs.errors import EngineError

    orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, [])

    def never_loads(engine, **inputs):
        raise EngineError(f"engine model '{engine}' is unavailable: model is not ready", True)

    orchestrator.engines = never_loads
    started = time.monotonic()
    response = orchestrator.warm_up(engines_timeout_s=0.3)
    assert time.monotonic() - started < 10
    assert outputs_of(response)["IMAGE"].shape == (32, 32, 3), "Triton's warm-up gets a valid answer"
    assert not orchestrator.budget.model.is_calibrated("vhs", orchestrator.config.max_candidates)


def test_a_server_that_is_not_ready_yet_is_not_waited_for(tiny_pipeline, tiny_preset):
    """Without the launcher's load order every model loads at once and Triton answers BLS with
    'Server not ready' until all are loaded: the warm-up gives up at once (no 120 s wait), loads
    the instance uncalibrated, and a later budget request calibrates it."""
    from fakes import make_orchestrator, outputs_of

    from vhs.errors import EngineError

    orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, [])
    bls = orchestrator.engines

    def server_not_ready(engine, **inputs):
        raise EngineError(f"engine model '{engine}' failed: Server not ready", False)

    orchestrator.engines = server_not_ready
    started = time.monotonic()
    response = orchestrator.warm_up()
    assert time.monotonic() - started < 5
    assert outputs_of(response)["IMAGE"].shape == (32, 32, 3)
    assert not orchestrator.budget.model.is_calibrated("vhs", orchestrator.config.max_candidates)
    orchestrator.engines = bls
    answered = orchestrator.execute([_budget_request()])[0]
    assert not answered.has_error()
    assert orchestrator.budget.model.is_calibrated("vhs", orchestrator.config.max_candidates)


def _budget_request():
    from fakes import FakeRequest, request_tensors

    return FakeRequest(request_tensors(budget_ms=1e6))
