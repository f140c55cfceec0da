"""The `vhs` model's logic without a server: a stand-in for triton_python_backend_utils whose BLS
requests run the PyTorch engines in-process."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vhs import protocol as P
from vhs.best_of_n import BestOfN
from vhs.serving.orchestrator import (
    BLSEngineRunner,
    EngineError,
    error_response,
    read_request,
    write_response,
)

PROMPT = "a photo of a red circle"
PROMPT_BYTES = PROMPT.encode()
ONE_VALUE_PER_ROW = {"timestep", "guidance", "question_length", "yes_probability"}
INTEGER_INPUTS = {"input_ids", "attention_mask", "prompt_attention_mask", "question_ids", "question_length"}


class FakeTensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True


class FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message, code=INTERNAL):
        self._message, self.code = message, code

    def message(self):
        return self._message


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error_value = list(output_tensors), error

    def has_error(self):
        return self.error_value is not None

    def error(self):
        return self.error_value


class FakeRequest:
    def __init__(self, tensors, parameters=None):
        self.tensors, self._parameters = tensors, json.dumps(parameters or {})

    def parameters(self):
        return self._parameters


def reshape_for_graph(tensor):
    array = tensor.as_numpy()
    return array.reshape(-1) if tensor.name() in ONE_VALUE_PER_ROW else array


def reshape_for_triton(name, array):
    return array.reshape(-1, 1) if name in ONE_VALUE_PER_ROW else array


def make_pb_utils(engines, calls):
    def exec_engine(request):
        calls.append((request.model_name, request.inputs[0].as_numpy().shape[0]))
        for tensor in request.inputs:  # what Triton's config (dims [1] + reshape []) expects on the wire
            assert tensor.as_numpy().ndim >= 2, f"{tensor.name()} must cross Triton with a non-batch axis"
        if request.model_name == "broken":
            return FakeResponse(error=FakeError("graph exploded"))
        inputs = {t.name(): torch.from_numpy(reshape_for_graph(t)) for t in request.inputs}
        with torch.no_grad():
            outputs = engines[request.model_name](**inputs)
        return FakeResponse(
            [FakeTensor(name, outputs[name].numpy()) for name in request.requested_output_names]
        )

    def inference_request(model_name, requested_output_names, inputs):
        request = SimpleNamespace(
            model_name=model_name, requested_output_names=requested_output_names, inputs=inputs
        )
        request.exec = lambda: exec_engine(request)
        return request

    def find(tensors, name):
        return next((t for t in tensors if t.name() == name), None)

    return SimpleNamespace(
        Tensor=FakeTensor,
        TritonError=FakeError,
        InferenceResponse=FakeResponse,
        InferenceRequest=inference_request,
        get_input_tensor_by_name=lambda request, name: find(request.tensors, name),
        get_output_tensor_by_name=lambda response, name: find(response.output_tensors, name),
    )


def describe(name):
    shape = [-1] if name in ONE_VALUE_PER_ROW else [-1, -1]
    return {"name": name, "dtype": "int64" if name in INTEGER_INPUTS else "float32", "shape": shape}


def engine_manifest(engines):
    return {
        name: {
            "inputs": [describe(i) for i in engine.input_names],
            "outputs": [describe(o) for o in engine.output_names],
        }
        for name, engine in engines.items()
    }


@pytest.fixture()
def served(tiny_pipeline, tiny_preset):
    calls = []
    pb_utils = make_pb_utils(tiny_pipeline.engines, calls)
    run = BLSEngineRunner(pb_utils, engine_manifest(tiny_pipeline.engines))
    config = tiny_preset.config
    best_of_n = BestOfN(
        run,
        tiny_pipeline.prompt_tokenizer,
        tiny_preset.latent_shape,
        config.max_timesteps,
        config.guidance_scale,
    )
    return SimpleNamespace(pb_utils=pb_utils, best_of_n=best_of_n, config=config, calls=calls)


def request_tensors(prompt=PROMPT_BYTES, n=None, seed=None, mode=None):
    tensors = [FakeTensor(P.PROMPT, np.array([prompt], dtype=np.object_))]
    if n is not None:
        tensors.append(FakeTensor(P.NUM_CANDIDATES, np.array([n], dtype=np.int32)))
    if seed is not None:
        tensors.append(FakeTensor(P.SEED, np.array([seed], dtype=np.int64)))
    if mode is not None:
        tensors.append(FakeTensor(P.MODE, np.array([mode], dtype=np.object_)))
    return tensors


@pytest.mark.parametrize("mode", ["vhs", "clip", "latent", "none"])
def test_bls_orchestration_equals_reference_pipeline(served, tiny_pipeline, mode):
    request = FakeRequest(request_tensors(n=5, seed=3, mode=mode.encode()))
    generation, return_candidates = read_request(request, served.pb_utils, served.config)
    served_output = served.best_of_n(generation, return_candidates)
    reference = tiny_pipeline(PROMPT, 5, 3, mode)
    assert served_output.selected == reference.selected
    np.testing.assert_array_equal(served_output.image, reference.image)
    np.testing.assert_allclose(served_output.scores, reference.scores, rtol=1e-6)


def test_vhs_mode_sends_all_candidates_in_one_call_per_stage(served):
    generation, _ = read_request(FakeRequest(request_tensors(n=6)), served.pb_utils, served.config)
    served.best_of_n(generation)
    assert served.calls == [
        ("text_encoder", 1),
        ("dit_prefix", 6),
        ("connector", 6),
        ("llm", 6),
        ("dit_suffix", 1),
        ("vae_decoder", 1),
    ]


def test_defaults_come_from_the_preset(served):
    generation, return_candidates = read_request(
        FakeRequest(request_tensors()), served.pb_utils, served.config
    )
    assert (generation.num_candidates, generation.seed, generation.mode) == (
        served.config.default_candidates,
        0,
        "vhs",
    )
    assert return_candidates is False


@pytest.mark.parametrize("flag", [True, "true", "1"])
def test_return_candidates_parameter(served, flag):
    request = FakeRequest(request_tensors(n=3), {P.RETURN_CANDIDATES: flag})
    generation, return_candidates = read_request(request, served.pb_utils, served.config)
    output = served.best_of_n(generation, return_candidates)
    response = write_response(output, served.pb_utils, (32, 32, 3))
    candidates = next(t for t in response.output_tensors if t.name() == P.CANDIDATE_IMAGES).as_numpy()
    assert candidates.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(candidates[output.selected], output.image)


def test_response_carries_every_protocol_output(served):
    generation, _ = read_request(FakeRequest(request_tensors(n=2)), served.pb_utils, served.config)
    response = write_response(served.best_of_n(generation), served.pb_utils, (32, 32, 3))
    outputs = {t.name(): t.as_numpy() for t in response.output_tensors}
    assert set(outputs) == {P.IMAGE, P.SCORES, P.SELECTED, P.TIMINGS, P.CANDIDATE_IMAGES}
    assert outputs[P.IMAGE].dtype == np.uint8 and outputs[P.SELECTED].dtype == np.int32
    assert outputs[P.CANDIDATE_IMAGES].shape == (0, 32, 32, 3)
    assert "dit_prefix" in json.loads(outputs[P.TIMINGS][0])


@pytest.mark.parametrize(
    ("tensors", "field"),
    [
        (request_tensors(prompt=b""), "PROMPT"),
        (request_tensors()[1:], "PROMPT is required"),
        (request_tensors(prompt=b"\xff\xfe"), "PROMPT must be UTF-8"),
        (request_tensors(n=0), "NUM_CANDIDATES"),
        (request_tensors(n=99), "NUM_CANDIDATES"),
        (request_tensors(seed=-5), "SEED"),
        (request_tensors(mode=b"best"), "MODE"),
        (request_tensors(mode=b"\xff"), "MODE must be UTF-8"),
    ],
)
def test_bad_values_become_invalid_arg_naming_the_field(served, tensors, field):
    with pytest.raises(ValueError, match=field) as caught:
        read_request(FakeRequest(tensors), served.pb_utils, served.config)
    response = error_response(caught.value, served.pb_utils)
    assert response.error().code == "INVALID_ARG"


def test_engine_failure_is_internal_and_names_the_engine(served):
    runner = BLSEngineRunner(
        served.pb_utils, {"broken": {"inputs": [describe("x")], "outputs": [describe("y")]}}
    )
    with pytest.raises(EngineError, match="'broken' failed: graph exploded") as caught:
        runner("broken", x=np.zeros((1, 2)))
    assert error_response(caught.value, served.pb_utils).error().code == "INTERNAL"
