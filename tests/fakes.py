"""Stand-ins for what Triton hands a Python model, shared by the tests that run the orchestrator
without a server: `triton_python_backend_utils` (tensors, errors, responses, BLS requests that run
the PyTorch engines in process) and a client's requests to the `vhs` model."""

import asyncio
import json
from types import SimpleNamespace

import numpy as np
import torch

from vhs import protocol as P
from vhs.best_of_n import BestOfN
from vhs.runtime.orchestrator import BLSEngineRunner, Orchestrator

PROMPT = "a photo of a red circle"
PROMPT_BYTES = PROMPT.encode()
# Tensors with one value per row: Triton carries them as [rows, 1], the graphs as [rows].
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
    INVALID_ARG, INTERNAL, UNAVAILABLE, CANCELLED = "INVALID_ARG", "INTERNAL", "UNAVAILABLE", "CANCELLED"

    def __init__(self, message, code=INTERNAL):
        self._message, self._code = message, code

    def message(self):
        return self._message

    def code(self):
        return self._code


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error_value = list(output_tensors), error

    def has_error(self):
        return self.error_value is not None

    def error(self):
        return self.error_value


class FakeRequest:
    def __init__(self, tensors, parameters=None, timeout_us=0):
        self.tensors, self._parameters, self._timeout_us = tensors, json.dumps(parameters or {}), timeout_us
        self.cancelled = False

    def parameters(self):
        return self._parameters

    def is_cancelled(self):
        return self.cancelled

    def timeout(self):
        return self._timeout_us


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
        if request.model_name == "unloaded":
            return FakeResponse(error=FakeError("model is not ready", FakeError.UNAVAILABLE))
        if request.model_name == "dead":  # how Triton 2.51 reports a killed stub: INTERNAL, in words
            return FakeResponse(error=FakeError("Stub process 'dead_0_0' is not healthy."))
        inputs = {t.name(): torch.from_numpy(reshape_for_graph(t)) for t in request.inputs}
        with torch.no_grad():
            outputs = engines[request.model_name](**inputs)
        return FakeResponse(
            [FakeTensor(name, outputs[name].numpy()) for name in request.requested_output_names]
        )

    def inference_request(model_name, requested_output_names, inputs, parameters):
        request = SimpleNamespace(
            model_name=model_name,
            requested_output_names=requested_output_names,
            inputs=inputs,
            parameters=parameters,
        )
        request.exec = lambda: exec_engine(request)

        async def async_exec():
            await asyncio.sleep(0)  # yield to the event loop, as a real BLS call in flight does
            return exec_engine(request)

        request.async_exec = async_exec
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


def make_orchestrator(pipeline, preset, calls):
    pb_utils = make_pb_utils(pipeline.engines, calls)
    config = preset.config
    return Orchestrator(
        pb_utils=pb_utils,
        best_of_n=BestOfN(preset.latent_shape, config.max_timesteps, config.guidance_scale),
        config=config,
        prompt_tokenizer=pipeline.prompt_tokenizer,
        engines=BLSEngineRunner(pb_utils, engine_manifest(pipeline.engines)),
        image_shape=(32, 32, 3),
    )


def outputs_of(response):
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors}


def request_tensors(prompt=PROMPT_BYTES, n=None, seed=None, mode=None, budget_ms=None):
    tensors = [FakeTensor(P.PROMPT, np.array([prompt], dtype=np.object_))]
    if n is not None:
        tensors.append(FakeTensor(P.NUM_CANDIDATES, np.array([n], dtype=np.int32)))
    if seed is not None:
        tensors.append(FakeTensor(P.SEED, np.array([seed], dtype=np.int64)))
    if mode is not None:
        tensors.append(FakeTensor(P.MODE, np.array([mode], dtype=np.object_)))
    if budget_ms is not None:
        tensors.append(FakeTensor(P.BUDGET_MS, np.array([budget_ms], dtype=np.float32)))
    return tensors
