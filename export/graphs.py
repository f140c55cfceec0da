"""Engine modules -> ONNX graphs: example inputs, torch's exporter, and what the graph declares.

The graphs are exported with torch's dynamo exporter and `optimize=False`: its default onnxscript
rewrite deletes the `+ 1e-15` epsilons of Sana's linear attention and DC-AE, turning 0/0 into silent
NaNs (see shared/notes/onnx-export.md). The batch axis is dynamic everywhere; the llm's visual-token
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

from vhs import engine_names as E
from vhs.engines import Engine
from vhs.noise import candidate_noise
from vhs.presets import Preset

EXAMPLE_PROMPT = "a photo of a red circle left of a blue square"
EXAMPLE_BATCH = 2  # the dynamo exporter needs an example batch >= 2 to keep the axis symbolic
MAX_VISUAL_TOKENS = 1 << 16

logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"


def example_inputs(
    preset: Preset, engines: dict[str, Engine], batch: int
) -> dict[str, dict[str, torch.Tensor]]:
    """Realistic inputs of every engine for `batch` candidates, made by running the engines upstream."""
    tokens = preset.prompt_tokenizer(EXAMPLE_PROMPT)
    rows = [0] * batch
    timestep = torch.full((batch,), preset.config.max_timesteps)
    inputs = {
        E.TEXT_ENCODER: {
            "input_ids": torch.from_numpy(tokens.input_ids[rows]),
            "attention_mask": torch.from_numpy(tokens.attention_mask[rows]),
        }
    }
    with torch.no_grad():
        prompt_embeds = engines[E.TEXT_ENCODER](**inputs[E.TEXT_ENCODER])["prompt_embeds"]
        noise = torch.from_numpy(candidate_noise(0, range(batch), preset.latent_shape))
        inputs[E.DIT_PREFIX] = {
            "noise": noise,
            "prompt_embeds": prompt_embeds,
            "prompt_attention_mask": inputs[E.TEXT_ENCODER]["attention_mask"],
            "timestep": timestep,
            "guidance": torch.full((batch,), preset.config.guidance_scale),
        }
        prefix = engines[E.DIT_PREFIX](**inputs[E.DIT_PREFIX])
        inputs[E.DIT_SUFFIX] = {**prefix, "noise": noise, "timestep": timestep}
        latents = engines[E.DIT_SUFFIX](**inputs[E.DIT_SUFFIX])["denoised_latents"]
        inputs[E.VAE_DECODER] = {"denoised_latents": latents}
        inputs[E.LATENT_CONNECTOR] = {"denoised_latents": latents}
        inputs[E.CLIP_VISION] = {"images": engines[E.VAE_DECODER](denoised_latents=latents)["images"]}
        inputs[E.CONNECTOR] = {"hidden_states": prefix["hidden_states"]}
        inputs[E.LLM] = {
            "visual_tokens": engines[E.CONNECTOR](**inputs[E.CONNECTOR])["visual_tokens"],
            "question_ids": torch.from_numpy(tokens.question_ids[rows]),
            "question_length": torch.from_numpy(tokens.question_length[rows]),
        }
    return inputs


def export_onnx(name: str, engine: Engine, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Export one engine to `path` (a single file; weights inline below 2 GB, external data above)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic_shapes = {input_name: {0: batch} for input_name in engine.input_names}
    if name == E.LLM:
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
