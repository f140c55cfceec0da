"""Pieces of the reliability path that need no server: the client's bounded retry, which engine
errors count as "unavailable", the stub census of the supervisor, the engines' token check."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from vhs.client.retry import RetryPolicy, call_with_retry, call_with_retry_async
from vhs.client.vhs_client import VHSRequestError
from vhs.launcher.stub_census import dead_models, stub_models
from vhs.runtime.availability import engine_unavailable
from vhs.runtime.engine_guard import (
    ENGINE_TOKEN_ENV,
    ENGINE_TOKEN_PARAMETER,
    EngineGuard,
    is_from_orchestrator,
    warmup_request_count,
)

UNAVAILABLE = VHSRequestError("engine model 'llm' is unavailable", "StatusCode.UNAVAILABLE")
INVALID = VHSRequestError("PROMPT must be a non-empty string", "StatusCode.INVALID_ARGUMENT")
FAST = RetryPolicy(attempts=4, first_delay_s=0.0, max_delay_s=0.0)


class Flaky:
    """Raises `errors` in turn, then returns "served"."""

    def __init__(self, *errors: Exception):
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "served"


def test_unavailable_is_retried_until_it_passes():
    flaky = Flaky(UNAVAILABLE, UNAVAILABLE)
    assert call_with_retry(flaky, FAST) == "served" and flaky.calls == 3


def test_retries_are_bounded_and_raise_the_last_error():
    flaky = Flaky(*[UNAVAILABLE] * 10)
    with pytest.raises(VHSRequestError, match="unavailable"):
        call_with_retry(flaky, FAST)
    assert flaky.calls == 4


def test_other_errors_are_not_retried():
    flaky = Flaky(INVALID)
    with pytest.raises(VHSRequestError, match="PROMPT"):
        call_with_retry(flaky, FAST)
    assert flaky.calls == 1


def test_a_reloading_orchestrator_is_retried_whatever_its_status():
    flaky = Flaky(
        VHSRequestError("Request for unknown model: 'vhs' has no available versions", "StatusCode.NOT_FOUND")
    )
    assert call_with_retry(flaky, FAST) == "served"


def test_async_retry_follows_the_same_policy():
    flaky = Flaky(UNAVAILABLE)

    async def call() -> str:
        return flaky()

    assert asyncio.run(call_with_retry_async(call, FAST)) == "served" and flaky.calls == 2


def test_default_delays_grow_are_capped_and_bounded_in_total(monkeypatch):
    delays = list(RetryPolicy().delays())
    assert len(delays) == 9
    caps = [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    # The jitter's extremes: a client waits 11.875 s to 23.75 s in all (RetryPolicy's promise).
    monkeypatch.setattr("vhs.client.retry.random.uniform", lambda low, high: high)
    assert sum(RetryPolicy().delays()) == 23.75
    monkeypatch.setattr("vhs.client.retry.random.uniform", lambda low, high: low)
    assert sum(RetryPolicy().delays()) == 11.875
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("message", "unavailable"),
    [
        ("Stub process 'dit_suffix_0_0' is not healthy.", True),
        ("Failed for execute the inference request. Model 'llm' is not ready.", True),
        ("Exceeds maximum queue size", True),
        ("[request id: <id_unknown>] Request timeout expired", True),
        ("onnxruntime: invalid shape", False),
    ],
)
def test_engine_errors_that_mean_down_or_overloaded(message, unavailable):
    assert engine_unavailable(message) is unavailable


def test_dead_models_are_those_with_fewer_live_stubs_than_at_start():
    expected = Counter({"vhs": 2, "llm": 1, "connector": 1})
    assert dead_models(expected, Counter({"vhs": 2, "llm": 1, "connector": 1})) == []
    assert dead_models(expected, Counter({"vhs": 1, "connector": 1})) == ["llm", "vhs"]


def test_stub_census_names_the_model_of_each_child_stub(tmp_path):
    # A stand-in stub: a child of this process with the Python backend's command line
    # (`.../triton_python_backend_stub <repository>/<model>/1/model.py <shm region>`).
    model_file = tmp_path / "llm" / "1" / "model.py"
    model_file.parent.mkdir(parents=True)
    model_file.write_text("import time\ntime.sleep(30)\n")
    stub = subprocess.Popen(
        [str(tmp_path / "triton_python_backend_stub"), str(model_file), "shm"], executable=sys.executable
    )
    try:
        assert stub_models(os.getpid(), tmp_path) == {stub.pid: "llm"}
        assert stub_models(os.getpid(), tmp_path / "other") == {}, "another repository's stubs do not count"
    finally:
        stub.kill()
        stub.wait()
    assert stub_models(os.getpid(), tmp_path) == {}


class TokenRequest:
    def __init__(self, parameters: dict):
        self._parameters = json.dumps(parameters)

    def parameters(self) -> str:
        return self._parameters


def test_engines_accept_only_requests_carrying_the_servers_token(monkeypatch):
    monkeypatch.setenv(ENGINE_TOKEN_ENV, "server-secret")
    assert is_from_orchestrator(TokenRequest({ENGINE_TOKEN_PARAMETER: "server-secret"}))
    assert not is_from_orchestrator(TokenRequest({}))
    assert not is_from_orchestrator(TokenRequest({ENGINE_TOKEN_PARAMETER: "guess"}))
    assert not is_from_orchestrator(TokenRequest({ENGINE_TOKEN_PARAMETER: 1}))


def test_without_a_token_engines_accept_every_request(monkeypatch):
    monkeypatch.delenv(ENGINE_TOKEN_ENV, raising=False)
    assert is_from_orchestrator(TokenRequest({}))


def test_an_engine_admits_exactly_its_warmup_requests_without_the_token(monkeypatch):
    """Triton's warm-up requests carry no token and arrive while the model loads, before any client
    can reach it: as many are admitted as the config's samples announce, then none."""
    monkeypatch.setenv(ENGINE_TOKEN_ENV, "server-secret")
    config = {"model_warmup": [{"batch_size": 1}, {"batch_size": 4, "count": 2}]}
    assert warmup_request_count(config) == 1 + 4 * 2
    assert warmup_request_count({}) == 0
    guard = EngineGuard(warmup_request_count(config))
    assert all(guard.admits(TokenRequest({})) for _ in range(9))
    assert not guard.admits(TokenRequest({}))
    assert guard.admits(TokenRequest({ENGINE_TOKEN_PARAMETER: "server-secret"}))
