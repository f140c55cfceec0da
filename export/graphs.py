"""Engine modules -> ONNX graphs: example inputs, torch's exporter, and what the graph declares.

The graphs are exported with torch's dynamo exporter and `optimize=False`: its default onnxscript
rewrite deletes the `+ 1e-15` epsilons of Sana's linear attention and DC-AE, turning 0/0 into silent
NaNs (docs/onnx-export.md). The batch axis is dynamic everywhere; the llm's visual-token
axis is dynamic too, because VHS, CLIP and latent verifiers feed it different token counts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from vhs.best_of_n import BestOfN
from vhs.engine_names import TEXT_ENCODER
from vhs.engines import Engine
from vhs.modes import GENERATION_CHAIN, MODES, llm_engines, modes_scored_by
from vhs.presets import Preset

EXAMPLE_PROMPT = "a photo of a red circle left of a blue square"
EXAMPLE_BATCH = 2  # the dynamo exporter needs an example batch >= 2 to keep the axis symbolic
MAX_VISUAL_TOKENS = 1 << 16

logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"


def example_inputs(
    preset: Preset, engines: dict[str, Engine], batch: int
) -> dict[str, dict[str, torch.Tensor]]:
    """Realistic inputs of every engine for `batch` candidates, made by running the engines upstream:
    the generation chain as a request runs it, every mode's visual encoder on what it reads, and each
    LLM on the visual tokens of the first mode it scores (VHS for the shared `llm`)."""
    tokens = preset.prompt_tokenizer(EXAMPLE_PROMPT)
    rows = [0] * batch
    inputs = {
        TEXT_ENCODER: _torch(
            {"input_ids": tokens.input_ids[rows], "attention_mask": tokens.attention_mask[rows]}
        )
    }
    best_of_n = BestOfN(preset.latent_shape, preset.config.max_timesteps, preset.config.guidance_scale)
    with torch.no_grad():
        prompt_embeds = engines[TEXT_ENCODER](**inputs[TEXT_ENCODER])["prompt_embeds"][:1]
        state = _torch(best_of_n.initial_state(0, list(range(batch)), prompt_embeds, tokens))
        for stage in GENERATION_CHAIN:
            inputs[stage] = _declared(engines[stage], state)
            state |= engines[stage](**inputs[stage])
        question = {
            "question_ids": tokens.question_ids[rows],
            "question_length": tokens.question_length[rows],
        }
        for mode in MODES.values():
            if mode.verifies:
                inputs[mode.visual_encoder] = _declared(engines[mode.visual_encoder], state)
        for llm in llm_engines():
            encoder = modes_scored_by(llm)[0].visual_encoder
            inputs[llm] = {**engines[encoder](**inputs[encoder]), **_torch(question)}
    return inputs


def visual_token_counts(engines: dict[str, Engine], inputs: dict[str, dict[str, torch.Tensor]], llm: str):
    """The visual-token count of every mode `llm` scores, the first mode's first (its TensorRT opt)."""
    with torch.no_grad():
        return [
            engines[mode.visual_encoder](**inputs[mode.visual_encoder])["visual_tokens"].shape[1]
            for mode in modes_scored_by(llm)
        ]


def _declared(engine: Engine, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensors[name] for name in engine.input_names}


def _torch(arrays: dict) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(array) for name, array in arrays.items()}


def export_onnx(name: str, engine: Engine, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Export one engine to `path` (a single file; weights inline below 2 GB, external data above)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic_shapes = {input_name: {0: batch} for input_name in engine.input_names}
    if name in llm_engines():
        dynamic_shapes["visual_tokens"] = {
            0: batch,
            1: torch.export.Dim("visual_tokens", max=MAX_VISUAL_TOKENS),
        }
    parameter_bytes = sum(p.numel() * p.element_size() for p in engine.module.parameters())
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter narrates every step; failures still raise
        torch.onnx.export(
            engine.module,
            tuple(inputs[input_name] for input_name in engine.input_names),
            str(path),
            input_names=list(engine.input_names),
            output_names=list(engine.output_names),
            dynamic_shapes=tuple(dynamic_shapes[input_name] for input_name in engine.input_names),
            opset_version=opset,
            dynamo=True,
            optimize=False,
            external_data=parameter_bytes > 1.9e9,
            verbose=False,
        )


def graph_io(path: Path) -> tuple[list[dict], list[dict]]:
    """The inputs and outputs an ONNX file declares: [{"name", "dtype" (numpy), "shape" (-1 = dynamic)}].

    Shapes include the batch axis. Read from the file itself, so configs written from them cannot
    disagree with the graph.
    """
    model = onnx.load(str(path), load_external_data=False)

    def describe(value_info) -> dict:
        tensor_type = value_info.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        shape = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim]
        return {"name": value_info.name, "dtype": dtype, "shape": shape}

    return [describe(v) for v in model.graph.input], [describe(v) for v in model.graph.output]
