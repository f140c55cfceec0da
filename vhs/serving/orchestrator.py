"""The logic of the `vhs` Triton model (BLS orchestrator), kept apart from `model.py` so it is unit
tested without a server: `triton_python_backend_utils` is passed in as `pb_utils`.

`model.py` only wires these pieces: read the request, run `BestOfN` with engines called through BLS,
write the response. Nothing here imports torch unless an engine returns a GPU tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import protocol as P
from ..best_of_n import BestOfN, GenerationOutput
from ..preset_config import PresetConfig
from ..prompting import PromptTokenizer
from ..request import GenerationRequest, parse_request

MANIFEST_FILE = "manifest.json"
TEXT_TOKENIZER_DIR = "tokenizer"
LLM_TOKENIZER_DIR = "llm_tokenizer"


class EngineError(RuntimeError):
    """An engine model answered a BLS request with an error."""


def load_orchestrator(model_dir: Path, pb_utils: Any) -> tuple[BestOfN, PresetConfig, dict]:
    """Build the BestOfN runner from the version folder of the `vhs` model (manifest + tokenizers)."""
    from transformers import AutoTokenizer

    from export.manifest import load_manifest, verify_engine_files

    manifest = load_manifest(model_dir / MANIFEST_FILE)
    # model_dir is <repository>/vhs/<version>: refuse graphs that are not the ones this manifest describes.
    verify_engine_files(manifest, model_dir.parent.parent)
    config = PresetConfig(**manifest["preset"])
    prompt_tokenizer = PromptTokenizer(
        AutoTokenizer.from_pretrained(model_dir / TEXT_TOKENIZER_DIR),
        AutoTokenizer.from_pretrained(model_dir / LLM_TOKENIZER_DIR),
        config.text_max_length,
        config.question_max_length,
    )
    run = BLSEngineRunner(pb_utils, manifest["engines"])
    best_of_n = BestOfN(
        run, prompt_tokenizer, tuple(manifest["latent_shape"]), config.max_timesteps, config.guidance_scale
    )
    return best_of_n, config, manifest


def read_request(request: Any, pb_utils: Any, config: PresetConfig) -> tuple[GenerationRequest, bool]:
    """Triton request -> validated GenerationRequest and whether candidate images were asked for.

    Triton has already checked dtypes and shapes against config.pbtxt; this checks presence and
    values and raises ValueError naming the field.
    """
    prompt = _scalar(request, pb_utils, P.PROMPT)
    if prompt is None:  # Triton does not enforce a required input when the model has optional ones
        raise ValueError(f"{P.PROMPT} is required")
    prompt = _text(prompt, P.PROMPT)
    num_candidates = _scalar(request, pb_utils, P.NUM_CANDIDATES)
    seed = _scalar(request, pb_utils, P.SEED)
    mode = _scalar(request, pb_utils, P.MODE)
    generation = parse_request(
        config,
        prompt,
        None if num_candidates is None else int(num_candidates),
        None if seed is None else int(seed),
        None if mode is None else _text(mode, P.MODE),
    )
    parameters = json.loads(request.parameters() or "{}")
    return generation, _flag(parameters.get(P.RETURN_CANDIDATES, False))


def write_response(output: GenerationOutput, pb_utils: Any, image_shape: tuple[int, int, int]) -> Any:
    """GenerationOutput -> Triton InferenceResponse with every output of vhs/protocol.py."""
    candidates = output.candidate_images
    if candidates is None:
        candidates = np.zeros((0, *image_shape), dtype=np.uint8)
    tensors = [
        pb_utils.Tensor(P.IMAGE, output.image),
        pb_utils.Tensor(P.SCORES, output.scores.astype(np.float32)),
        pb_utils.Tensor(P.SELECTED, np.array([output.selected], dtype=np.int32)),
        pb_utils.Tensor(P.TIMINGS, np.array([json.dumps(output.timings_ms).encode()], dtype=np.object_)),
        pb_utils.Tensor(P.CANDIDATE_IMAGES, candidates),
    ]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def error_response(error: Exception, pb_utils: Any) -> Any:
    """ValueError (bad input) -> INVALID_ARG; anything else -> INTERNAL, with the message kept."""
    codes = pb_utils.TritonError
    code = codes.INVALID_ARG if isinstance(error, ValueError) else codes.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), code))


class BLSEngineRunner:
    """`run(engine, **inputs)` for BestOfN: one BLS request to the engine model, all rows in one batch.

    Inputs are cast to the dtypes the manifest records for the graph. Outputs stay where the engine
    left them: numpy views on the host, or torch tensors through DLPack when they live on a GPU.
    Tensors with one value per row, shape (batch,) in the graph, cross Triton as (batch, 1): Triton
    needs a non-empty `dims` and the configs map it back with `reshape { shape: [] }`.
    """

    def __init__(self, pb_utils: Any, engines: dict):
        self.pb_utils = pb_utils
        self.engines = engines

    def __call__(self, engine: str, **inputs) -> dict[str, Any]:
        spec = self.engines[engine]
        tensors = [
            self._to_triton(i["name"], _triton_rows(inputs[i["name"]], i["shape"]), i["dtype"])
            for i in spec["inputs"]
        ]
        output_names = [item["name"] for item in spec["outputs"]]
        response = self.pb_utils.InferenceRequest(
            model_name=engine, requested_output_names=output_names, inputs=tensors
        ).exec()
        if response.has_error():
            raise EngineError(f"engine model '{engine}' failed: {response.error().message()}")
        outputs = {}
        for output in spec["outputs"]:
            tensor = self.pb_utils.get_output_tensor_by_name(response, output["name"])
            outputs[output["name"]] = _graph_rows(self._from_triton(tensor), output["shape"])
        return outputs

    def _to_triton(self, name: str, value: Any, dtype: str) -> Any:
        if isinstance(value, np.ndarray):
            return self.pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype))
        from torch.utils.dlpack import to_dlpack  # a device tensor from an earlier engine: no host copy

        return self.pb_utils.Tensor.from_dlpack(name, to_dlpack(value.contiguous()))

    @staticmethod
    def _from_triton(tensor: Any) -> Any:
        if tensor.is_cpu():
            return tensor.as_numpy()
        from torch.utils.dlpack import from_dlpack

        return from_dlpack(tensor.to_dlpack())


def _triton_rows(array: Any, graph_shape: list[int]) -> Any:
    return array.reshape(-1, 1) if len(graph_shape) == 1 else array


def _graph_rows(array: Any, graph_shape: list[int]) -> Any:
    return array.reshape(-1) if len(graph_shape) == 1 else array


def _scalar(request: Any, pb_utils: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise ValueError(f"{name} must hold exactly one value, got {values.size}")
    return values[0]


def _text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{name} must be UTF-8 text: {error}") from None
    return str(value)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
