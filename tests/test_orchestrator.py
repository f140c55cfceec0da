"""The `vhs` model's logic without a server: a stand-in for triton_python_backend_utils whose BLS
requests run the PyTorch engines in-process."""

import asyncio
import json
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import (
    PROMPT,
    FakeRequest,
    describe,
    make_orchestrator,
    outputs_of,
    request_tensors,
)

from vhs import protocol as P
from vhs.errors import EngineError
from vhs.modes import MODES
from vhs.runtime.budget import CALIBRATION_ROUNDS
from vhs.runtime.engine_guard import ENGINE_TOKEN_ENV, ENGINE_TOKEN_PARAMETER
from vhs.runtime.orchestrator import BLSEngineRunner, error_response


@pytest.fixture()
def served(tiny_pipeline, tiny_preset):
    calls = []
    orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, calls)
    return SimpleNamespace(orchestrator=orchestrator, pb_utils=orchestrator.pb_utils, calls=calls)


def generate(orchestrator, request):
    """The sync driver on one request, through read_request and the BLS runner."""
    from vhs.best_of_n import run_steps

    return run_steps(orchestrator.steps(request)[1], orchestrator.engines)


@pytest.mark.parametrize("mode", ["vhs", "clip", "latent", "none"])
def test_bls_orchestration_equals_reference_pipeline(served, tiny_pipeline, mode):
    request = FakeRequest(request_tensors(n=5, seed=3, mode=mode.encode()))
    served_output = generate(served.orchestrator, request)
    reference = tiny_pipeline(PROMPT, 5, 3, mode)
    assert served_output.selected == reference.selected
    np.testing.assert_array_equal(served_output.image, reference.image)
    np.testing.assert_allclose(served_output.scores, reference.scores, rtol=1e-6)


@pytest.mark.parametrize("mode", ["vhs", "clip", "none"])
def test_sync_and_async_drivers_give_identical_responses(tiny_pipeline, tiny_preset, mode):
    """The same three requests through `execute` (exec) and `execute_async` (async_exec, gathered)."""
    requests = [
        FakeRequest(request_tensors(n=n, seed=seed, mode=mode.encode()), {P.RETURN_CANDIDATES: True})
        for n, seed in ((3, 0), (1, 7), (4, 2))
    ]
    sync_calls, async_calls = [], []
    sync_responses = make_orchestrator(tiny_pipeline, tiny_preset, sync_calls).execute(requests)
    async_orchestrator = make_orchestrator(tiny_pipeline, tiny_preset, async_calls)
    async_responses = asyncio.run(async_orchestrator.execute_async(requests))
    for sync_response, async_response in zip(sync_responses, async_responses, strict=True):
        expected, actual = outputs_of(sync_response), outputs_of(async_response)
        for name in (P.IMAGE, P.SCORES, P.SELECTED, P.CANDIDATE_IMAGES):
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    assert sorted(async_calls) == sorted(sync_calls)
    # Gathered, the requests interleave: the second request's text encoder runs before the first's prefix.
    assert async_calls[:3] == [("text_encoder", 1)] * 3


def test_vhs_mode_sends_all_candidates_in_one_call_per_stage(served):
    generate(served.orchestrator, FakeRequest(request_tensors(n=6)))
    assert served.calls == [
        ("text_encoder", 1),
        ("dit_prefix", 6),
        ("connector", 6),
        ("llm", 6),
        ("dit_suffix", 1),
        ("vae_decoder", 1),
    ]


@pytest.mark.parametrize("mode", ["vhs", "clip", "latent", "none"])
def test_the_mode_tables_engine_rows_are_the_calls_a_request_makes(served, mode):
    """The latency model reads a request's batch sizes from the mode table; they must be the calls."""
    generate(served.orchestrator, FakeRequest(request_tensors(n=3, mode=mode.encode())))
    assert served.calls == list(MODES[mode].engine_rows(3).items())


def test_defaults_come_from_the_preset(served):
    generation, return_candidates = served.orchestrator.read_request(FakeRequest(request_tensors()))
    assert (generation.num_candidates, generation.seed, generation.mode) == (
        served.orchestrator.config.default_candidates,
        0,
        "vhs",
    )
    assert return_candidates is False


@pytest.mark.parametrize("flag", [True, "true", "1"])
def test_return_candidates_parameter(served, flag):
    request = FakeRequest(request_tensors(n=3), {P.RETURN_CANDIDATES: flag})
    outputs = outputs_of(served.orchestrator.execute([request])[0])
    assert outputs[P.CANDIDATE_IMAGES].shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(outputs[P.CANDIDATE_IMAGES][outputs[P.SELECTED][0]], outputs[P.IMAGE])


def test_mode_none_keeps_n_and_returns_every_candidate(served):
    request = FakeRequest(request_tensors(n=3, mode=b"none"), {P.RETURN_CANDIDATES: True})
    outputs = outputs_of(served.orchestrator.execute([request])[0])
    assert outputs[P.CANDIDATE_IMAGES].shape == (3, 32, 32, 3)
    assert outputs[P.SCORES].shape == (0,) and outputs[P.SELECTED][0] == 0
    np.testing.assert_array_equal(outputs[P.CANDIDATE_IMAGES][0], outputs[P.IMAGE])


def test_response_carries_every_protocol_output(served):
    outputs = outputs_of(served.orchestrator.execute([FakeRequest(request_tensors(n=2))])[0])
    assert set(outputs) == {
        P.IMAGE,
        P.SCORES,
        P.SELECTED,
        P.TIMINGS,
        P.CANDIDATE_IMAGES,
        P.NUM_CANDIDATES_USED,
        P.PREDICTED_MS,
        P.REQUEST_MS,
    }
    assert outputs[P.IMAGE].dtype == np.uint8 and outputs[P.SELECTED].dtype == np.int32
    assert outputs[P.NUM_CANDIDATES_USED].tolist() == [2] and np.isnan(outputs[P.PREDICTED_MS]).all()
    stages_ms = sum(json.loads(outputs[P.TIMINGS][0]).values())
    assert stages_ms <= outputs[P.REQUEST_MS][0] < stages_ms + 1000
    assert outputs[P.CANDIDATE_IMAGES].shape == (0, 32, 32, 3)
    assert "dit_prefix" in json.loads(outputs[P.TIMINGS][0])


@pytest.mark.parametrize(
    ("tensors", "field"),
    [
        (request_tensors(prompt=b""), "PROMPT"),
        (request_tensors()[1:], "PROMPT is required"),
        (request_tensors(prompt=b"\xff\xfe"), "PROMPT must be UTF-8"),
        (request_tensors(prompt=b"circle " * 40), "PROMPT is .* tokens long; the limit is 32"),
        (request_tensors(n=0), "NUM_CANDIDATES"),
        (request_tensors(n=99), "NUM_CANDIDATES"),
        (request_tensors(seed=-5), "SEED"),
        (request_tensors(mode=b"best"), "MODE"),
        (request_tensors(mode=b"\xff"), "MODE must be UTF-8"),
        (
            request_tensors(budget_ms=0.0),
            "BUDGET_MS must be a positive, finite number of milliseconds, got 0.0",
        ),
        (request_tensors(budget_ms=-20.0), "BUDGET_MS .* got -20.0"),
        (request_tensors(budget_ms=float("nan")), "BUDGET_MS .* got nan"),
        (request_tensors(budget_ms=float("inf")), "BUDGET_MS .* got inf"),
        (request_tensors(n=0, budget_ms=50.0), "NUM_CANDIDATES"),
    ],
)
def test_bad_values_become_invalid_arg_naming_the_field(served, tensors, field):
    response = served.orchestrator.execute([FakeRequest(tensors)])[0]
    assert response.error().code() == "INVALID_ARG"
    assert re.search(field, response.error().message())
    assert served.calls == [], "validation happens before any engine runs"


def test_a_value_error_inside_an_engine_is_internal_not_invalid_arg(served, monkeypatch):
    """Only validation's InvalidRequest means bad input; a numpy ValueError in an engine is the server's."""
    bls = served.orchestrator.engines

    def llm_with_a_bug(engine, **inputs):
        if engine == "llm":
            raise ValueError("operands could not be broadcast together")
        return bls(engine, **inputs)

    monkeypatch.setattr(served.orchestrator, "engines", llm_with_a_bug)
    response = served.orchestrator.execute([FakeRequest(request_tensors(n=2))])[0]
    assert response.error().code() == "INTERNAL"
    assert "broadcast" in response.error().message()


@pytest.mark.parametrize(
    ("engine", "code", "message"),
    [
        ("broken", "INTERNAL", "'broken' failed: graph exploded"),
        ("unloaded", "UNAVAILABLE", "'unloaded' is unavailable: model is not ready"),
        ("dead", "UNAVAILABLE", "'dead' is unavailable: Stub process 'dead_0_0' is not healthy"),
    ],
)
def test_engine_failure_names_the_engine(served, engine, code, message):
    runner = BLSEngineRunner(
        served.pb_utils, {engine: {"inputs": [describe("x")], "outputs": [describe("y")]}}
    )
    with pytest.raises(EngineError, match=message) as caught:
        runner(engine, x=np.zeros((1, 2)))
    assert error_response(caught.value, served.pb_utils).error().code() == code


def test_bls_requests_carry_the_engine_token(served, monkeypatch):
    monkeypatch.setenv(ENGINE_TOKEN_ENV, "server-secret")
    runner = BLSEngineRunner(
        served.pb_utils, {"broken": {"inputs": [describe("x")], "outputs": [describe("y")]}}
    )
    assert runner._request("broken", {"x": np.zeros((1, 2))}).parameters == {
        ENGINE_TOKEN_PARAMETER: "server-secret"
    }


@pytest.mark.parametrize("abandon", ["cancel", "deadline"])
def test_abandoned_request_stops_before_the_next_stage(served, abandon):
    # A deadline far above the two tiny engine calls, even on a loaded machine.
    request = FakeRequest(request_tensors(n=4), timeout_us=2_000_000 if abandon == "deadline" else 0)
    bls = served.orchestrator.engines

    def engine_then_abandon(engine, **inputs):
        outputs = bls(engine, **inputs)
        if engine == "dit_prefix":
            request.cancelled = abandon == "cancel"
            if abandon == "deadline":
                time.sleep(2.1)  # past the 2 s deadline
        return outputs

    served.orchestrator.engines = engine_then_abandon
    served.orchestrator.cancel_poll_s = 0  # ask before every call (the served default: once per 20 ms)
    response = served.orchestrator.execute([request])[0]
    assert response.error().code() == "CANCELLED"
    assert response.error().message().endswith("before connector")
    assert [engine for engine, _ in served.calls] == ["text_encoder", "dit_prefix"]


def test_abandoned_request_stops_under_the_async_driver_too(served):
    request = FakeRequest(request_tensors(n=2))
    request.cancelled = True
    response = asyncio.run(served.orchestrator.execute_async([request]))[0]
    assert response.error().code() == "CANCELLED" and served.calls == []


# --- BUDGET_MS -------------------------------------------------------------------------------------


@pytest.mark.slow  # calibrates the latency model
def test_first_budget_request_calibrates_the_mode_then_serves_the_reference_at_its_n(served, tiny_pipeline):
    """Calibration: the request's mode at N = 1 and N = max_candidates, CALIBRATION_ROUNDS times each,
    before the request itself; the next budget request of the mode goes straight to its engines."""
    max_n = served.orchestrator.config.max_candidates
    outputs = outputs_of(
        served.orchestrator.execute([FakeRequest(request_tensors(seed=4, budget_ms=1e6))])[0]
    )
    per_request = len(MODES["vhs"].engines)
    assert len(served.calls) == (2 * CALIBRATION_ROUNDS + 1) * per_request
    assert served.calls[-per_request:] == list(MODES["vhs"].engine_rows(max_n).items())
    assert outputs[P.NUM_CANDIDATES_USED].tolist() == [max_n], "no NUM_CANDIDATES: the cap is max_candidates"
    assert 0 < outputs[P.PREDICTED_MS][0] < 1e6
    reference = tiny_pipeline(PROMPT, max_n, 4, "vhs")
    np.testing.assert_array_equal(outputs[P.IMAGE], reference.image)
    np.testing.assert_allclose(outputs[P.SCORES], reference.scores, rtol=1e-6)

    served.calls.clear()
    outputs = outputs_of(served.orchestrator.execute([FakeRequest(request_tensors(n=3, budget_ms=1e6))])[0])
    assert outputs[P.NUM_CANDIDATES_USED].tolist() == [3], "NUM_CANDIDATES caps N"
    assert len(served.calls) == per_request


@pytest.mark.slow  # calibrates the latency model
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_budget_n_is_the_latency_models_choice_and_its_result_the_reference_at_that_n(
    served, tiny_pipeline, driver
):
    """Requests without a budget teach the model too (no calibration is needed after N = 1 and N =
    8 were served); a budget request then gets the N the model says fits, with either driver."""
    orchestrator, model = served.orchestrator, served.orchestrator.budget.model
    for _ in range(3):
        orchestrator.execute([FakeRequest(request_tensors(n=n, mode=b"clip")) for n in (1, 8)])
    assert model.is_calibrated("clip", 8)
    budget_ms = (model.predict_ms("clip", 2) + model.predict_ms("clip", 7)) / 2
    expected_n, expected_ms = model.largest_fitting("clip", budget_ms, 8)
    served.calls.clear()
    request = FakeRequest(request_tensors(seed=9, mode=b"clip", budget_ms=budget_ms))
    execute = (
        orchestrator.execute if driver == "sync" else lambda r: asyncio.run(orchestrator.execute_async(r))
    )
    outputs = outputs_of(execute([request])[0])
    assert outputs[P.NUM_CANDIDATES_USED].tolist() == [expected_n]
    assert outputs[P.PREDICTED_MS][0] == pytest.approx(expected_ms, rel=1e-6) and expected_ms <= budget_ms
    assert len(served.calls) == len(MODES["clip"].engines), "no calibration"
    reference = tiny_pipeline(PROMPT, expected_n, 9, "clip")
    np.testing.assert_array_equal(outputs[P.IMAGE], reference.image)
    np.testing.assert_allclose(outputs[P.SCORES], reference.scores, rtol=1e-6)


@pytest.mark.slow  # calibrates the latency model
def test_a_budget_below_one_candidate_is_served_at_n_1_with_its_prediction(served):
    outputs = outputs_of(served.orchestrator.execute([FakeRequest(request_tensors(budget_ms=1e-3))])[0])
    assert outputs[P.NUM_CANDIDATES_USED].tolist() == [1]
    assert outputs[P.PREDICTED_MS][0] > 1e-3
