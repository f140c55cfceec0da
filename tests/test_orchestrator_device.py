"""The orchestrator's device path with stand-in GPU tensors: engines that answer in (stand-in) device
memory, reached only through DLPack. Every tensor one engine returns reaches the next engine as the
same device memory -- no host copy between engines -- and only the request's own data (tokens,
noise, times) and the N scores and the final image cross the host. The result equals the reference
pipeline. (On this machine the "device" memory is a CPU torch tensor; the code path is the GPU one.)"""

import numpy as np
import pytest
import torch
from fakes import FakeTensor, engine_manifest
from torch.utils.dlpack import from_dlpack, to_dlpack

from vhs.best_of_n import BestOfN, run_steps
from vhs.modes import MODES, mode_names
from vhs.request import parse_request
from vhs.runtime.orchestrator import BLSEngineRunner

PROMPT = "a photo of a red circle"
GPU = "TRITONSERVER_MEMORY_GPU"
# The request's own data: drawn or tokenised on the host, copied in by Triton.
HOST_INPUTS = {
    "input_ids",
    "attention_mask",
    "noise",
    "prompt_attention_mask",
    "timestep",
    "guidance",
    "question_ids",
    "question_length",
}


class HostTensor(FakeTensor):
    """A tensor in host memory (the request's own data); `from_dlpack` makes a device one."""

    @staticmethod
    def from_dlpack(name, capsule):
        return DeviceTensor(name, from_dlpack(capsule))


class DeviceTensor:
    """A tensor in device memory: a torch tensor that only DLPack reaches."""

    def __init__(self, name, tensor):
        self._name, self.tensor = name, tensor

    def name(self):
        return self._name

    def is_cpu(self):
        return False

    def to_dlpack(self):
        return to_dlpack(self.tensor)

    def as_numpy(self):
        raise AssertionError(f"device tensor {self._name} was read back to the host")


class Response:
    def __init__(self, output_tensors):
        self.output_tensors = output_tensors

    def has_error(self):
        return False


class StandInGpuServer:
    """The parts of triton_python_backend_utils the runner uses, with engines that answer on the device."""

    Tensor = HostTensor
    TRITONSERVER_MEMORY_GPU = GPU

    def __init__(self, engines):
        self.engines = engines
        self.calls = []  # (engine, {input name: "host" | "device"}, preferred memory)
        self.outputs = {}  # data_ptr -> (engine, output name) of every device output

    @staticmethod
    def PreferredMemory(kind, device_id):  # noqa: N802 -- pb_utils' spelling
        return (kind, device_id)

    def InferenceRequest(
        self, model_name, requested_output_names, inputs, parameters=None, preferred_memory=None
    ):  # noqa: N802
        server = self

        class Request:
            def exec(self):
                return server.run(model_name, requested_output_names, inputs, preferred_memory)

        return Request()

    def get_output_tensor_by_name(self, response, name):
        return next(t for t in response.output_tensors if t.name() == name)

    def run(self, engine, output_names, inputs, preferred_memory):
        where = {t.name(): "host" if t.is_cpu() else "device" for t in inputs}
        self.calls.append((engine, where, preferred_memory, [t for t in inputs if not t.is_cpu()]))
        feed = {}
        for tensor in inputs:
            value = torch.from_numpy(tensor.as_numpy()) if tensor.is_cpu() else tensor.tensor
            feed[tensor.name()] = value.reshape(-1) if value.ndim == 2 and value.shape[1] == 1 else value
        with torch.no_grad():
            outputs = self.engines[engine](**feed)
        tensors = []
        for name in output_names:
            value = outputs[name].reshape(-1, 1) if outputs[name].ndim == 1 else outputs[name]
            self.outputs[value.data_ptr()] = (engine, name)
            tensors.append(DeviceTensor(name, value))
        return Response(tensors)


@pytest.mark.parametrize("mode", mode_names())
def test_device_tensors_go_from_engine_to_engine_without_a_host_copy(tiny_pipeline, tiny_preset, mode):
    server = StandInGpuServer(tiny_pipeline.engines)
    runner = BLSEngineRunner(server, engine_manifest(tiny_pipeline.engines), on_gpu=True)
    config = tiny_preset.config
    best_of_n = BestOfN(tiny_preset.latent_shape, config.max_timesteps, config.guidance_scale)
    request = parse_request(config, tiny_pipeline.prompt_tokenizer, PROMPT, 4, 3, mode)
    served = run_steps(best_of_n.steps(request), runner)  # reads back only scores and the image
    reference = tiny_pipeline(PROMPT, 4, 3, mode)

    np.testing.assert_array_equal(served.image, reference.image)
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-6, atol=1e-7)
    assert served.selected == reference.selected
    assert all(preferred == (GPU, 0) for _, _, preferred, _ in server.calls), "outputs asked for on the GPU"
    for engine, where, _, _ in server.calls:
        host = {name for name, kind in where.items() if kind == "host"}
        assert host <= HOST_INPUTS, f"{engine} got {host - HOST_INPUTS} through the host"
    # DLPack round trip: the LLM reads the visual encoder's output as the very same device memory.
    mode_spec = MODES[mode]
    if mode_spec.verifies:
        (llm_inputs,) = [inputs for engine, _, _, inputs in server.calls if engine == mode_spec.llm]
        visual_tokens = next(t for t in llm_inputs if t.name() == "visual_tokens")
        assert server.outputs[visual_tokens.tensor.data_ptr()] == (mode_spec.visual_encoder, "visual_tokens")


def test_a_cpu_repository_asks_for_no_memory_kind(tiny_pipeline):
    server = StandInGpuServer(tiny_pipeline.engines)
    runner = BLSEngineRunner(server, engine_manifest(tiny_pipeline.engines))
    runner("connector", hidden_states=np.zeros((1, 64, 16), np.float32))
    assert server.calls[0][2] is None
