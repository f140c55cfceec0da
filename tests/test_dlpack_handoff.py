"""The orchestrator hands device tensors to the next engine as objects with `__dlpack__`, after the
stream that wrote them has finished; a DLPack capsule (the Python backend skips its stream
synchronisation for one) fails these checks. Stand-ins for the CUDA pieces: no GPU here."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch.utils.dlpack import to_dlpack

import vhs.runtime.dlpack as dlpack
from vhs.runtime.orchestrator import BLSEngineRunner

KDL_CPU, KDL_CUDA = 1, 2


class StandInCudaTensor:
    """What the runner sees of a CUDA torch tensor: `is_cuda`, `device`, `contiguous()`, DLPack."""

    def __init__(self, events: list[str], device_type: int = KDL_CUDA):
        self.events, self.device_type = events, device_type
        self.is_cuda = True
        self.device = "cuda:0"
        self.data = torch.arange(6.0).reshape(2, 3)

    def contiguous(self):
        return self

    def __dlpack__(self, stream=None):
        self.events.append(f"exported on stream {stream}")
        return to_dlpack(self.data)

    def __dlpack_device__(self):
        return (self.device_type, 0)


class RecordingPbUtils:
    """`pb_utils.Tensor.from_dlpack` that records what it was given and when."""

    def __init__(self, events: list[str]):
        self.received = []
        outer = self

        class Tensor:
            def __init__(self, name, array):
                self.name, self.array = name, array

            @staticmethod
            def from_dlpack(name, handed):
                events.append("handed over")
                outer.received.append(handed)
                return (name, handed)

        self.Tensor = Tensor


@pytest.fixture
def recorded(monkeypatch):
    """events: what happened, in order; synchronize_producer records instead of calling CUDA."""
    events: list[str] = []
    monkeypatch.setattr(
        dlpack, "synchronize_producer", lambda tensor: events.append(f"synchronized {tensor.device}")
    )
    return events


def assert_synchronised_handoff(hand_over, events):
    """`hand_over(pb_utils, value)` must give from_dlpack an object with __dlpack__, after a sync."""
    pb_utils = RecordingPbUtils(events)
    hand_over(pb_utils, StandInCudaTensor(events))
    (handed,) = pb_utils.received
    assert hasattr(handed, "__dlpack__") and hasattr(handed, "__dlpack_device__"), (
        f"a {type(handed).__name__} was handed over: the Python backend does not synchronise a capsule"
    )
    assert "synchronized cuda:0" in events, "the producing stream was not synchronised"
    assert events.index("synchronized cuda:0") < events.index("handed over")


def test_the_runner_hands_over_a_synchronised_tensor_object(recorded):
    def runner_hand_over(pb_utils, value):
        BLSEngineRunner(pb_utils, {})._to_triton("hidden_states", value, "float32")

    assert_synchronised_handoff(runner_hand_over, recorded)


def test_a_capsule_hand_off_fails_the_check(recorded):
    """The previous hand-off, `from_dlpack(name, to_dlpack(value))`, is caught by the same check."""

    def capsule_hand_over(pb_utils, value):
        pb_utils.Tensor.from_dlpack("hidden_states", to_dlpack(value.data))

    with pytest.raises(AssertionError, match="PyCapsule was handed over"):
        assert_synchronised_handoff(capsule_hand_over, recorded)


def test_host_arrays_are_copied_not_synchronised(recorded):
    pb_utils = RecordingPbUtils(recorded)
    tensor = BLSEngineRunner(pb_utils, {})._to_triton("noise", np.zeros((2, 3)), "float32")
    assert tensor.array.dtype == np.float32 and recorded == []


def test_synchronize_producer_waits_for_the_tensors_device_stream(monkeypatch):
    calls = []

    class Stream:
        def synchronize(self):
            calls.append("synchronize")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: calls.append(device) or Stream())
    dlpack.synchronize_producer(types.SimpleNamespace(is_cuda=True, device="cuda:1"))
    assert calls == ["cuda:1", "synchronize"]
    dlpack.synchronize_producer(torch.zeros(2))  # a host tensor: nothing to wait for
    assert calls == ["cuda:1", "synchronize"]


def test_engine_outputs_are_read_through_their_own_dlpack():
    events: list[str] = []
    output = StandInCudaTensor(events, device_type=KDL_CPU)  # torch here has no CUDA to import into
    torch.testing.assert_close(dlpack.from_engine(output), output.data)
    assert events and events[0].startswith("exported on stream")
