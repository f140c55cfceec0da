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
from vhs.modes import GENERATION_CHAIN, all_engines, llm_engines, modes_scored_by
from vhs.presets import Preset
from vhs.runtime.onnx_engine import onnx_model_file

EXAMPLE_PROMPT = "a photo of a red circle left of a blue square"
EXAMPLE_BATCH = 2  # the dynamo exporter needs an example batch >= 2 to keep the axis symbolic
MAX_VISUAL_TOKENS = 1 << 16
# Graphs with more parameter bytes than this keep their weights in external data (protobuf's limit
# is 2 GB). Tests lower it to serve a tiny graph in the directory form.
EXTERNAL_DATA_THRESHOLD_BYTES = int(1.9e9)

logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"


class ExampleChain:
    """Realistic example inputs, engine by engine, made by running the engines upstream as a request
    does: the text encoder, the generation chain, every visual encoder on what its mode reads, each
    LLM on the visual tokens of the first served mode it scores (VHS for the shared `llm`).

    Engines are given one at a time (`inputs_for`, then `record` once exported), so the exporter
    needs only the components of the engine at hand in memory; what flows downstream is kept here.
    """

    def __init__(self, preset: Preset, batch: int):
        self.tokens = preset.prompt_tokenizer(EXAMPLE_PROMPT)
        self.rows = [0] * batch
        self.config = preset.config
        self.state: dict[str, torch.Tensor] = {}  # outputs of the generation stages so far
        self.visual_tokens: dict[str, torch.Tensor] = {}  # by visual encoder
        self.latent_shape: tuple[int, int, int] | None = None  # known once the DiT is loaded

    def inputs_for(self, name: str, engine: Engine, preset: Preset) -> dict[str, torch.Tensor]:
        """The inputs of engine `name`; `preset` holds at least its components."""
        if name == TEXT_ENCODER:
            return _torch(
                {
                    "input_ids": self.tokens.input_ids[self.rows],
                    "attention_mask": self.tokens.attention_mask[self.rows],
                }
            )
        if name == GENERATION_CHAIN[0]:
            self.latent_shape = preset.latent_shape
            best_of_n = BestOfN(self.latent_shape, self.config.max_timesteps, self.config.guidance_scale)
            prompt_embeds = self.state.pop("prompt_embeds")[:1]
            candidates = list(range(len(self.rows)))
            self.state = _torch(best_of_n.initial_state(0, candidates, prompt_embeds, self.tokens))
        if name in llm_engines():
            encoder = next(
                mode.visual_encoder
                for mode in modes_scored_by(name)
                if mode.visual_encoder in self.visual_tokens
            )
            question = {
                "question_ids": self.tokens.question_ids[self.rows],
                "question_length": self.tokens.question_length[self.rows],
            }
            return {"visual_tokens": self.visual_tokens[encoder], **_torch(question)}
        return _declared(engine, self.state)

    def record(self, name: str, engine: Engine, inputs: dict[str, torch.Tensor]) -> None:
        """Run engine `name` on its inputs and keep what downstream engines read."""
        with torch.no_grad():
            outputs = engine(**inputs)
        if name in (TEXT_ENCODER, *GENERATION_CHAIN):
            self.state |= outputs
        elif "visual_tokens" in outputs and name not in llm_engines():
            self.visual_tokens[name] = outputs["visual_tokens"]

    def visual_token_counts(self, llm: str) -> list[int]:
        """The visual-token count of every served mode `llm` scores, the first mode's first (its
        TensorRT opt)."""
        modes = modes_scored_by(llm)
        return [
            self.visual_tokens[m.visual_encoder].shape[1]
            for m in modes
            if m.visual_encoder in self.visual_tokens
        ]


def example_inputs(
    preset: Preset, engines: dict[str, Engine], batch: int
) -> dict[str, dict[str, torch.Tensor]]:
    """Example inputs of every engine in `engines` (all components of `preset` loaded), see ExampleChain."""
    chain = ExampleChain(preset, batch)
    inputs = {}
    for name in [name for name in all_engines() if name in engines]:
        inputs[name] = chain.inputs_for(name, engines[name], preset)
        chain.record(name, engines[name], inputs[name])
    return inputs


def _declared(engine: Engine, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensors[name] for name in engine.input_names}


def _torch(arrays: dict) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(array) for name, array in arrays.items()}


def export_onnx(
    name: str, engine: Engine, inputs: dict[str, torch.Tensor], onnx_dir: Path, opset: int
) -> Path:
    """Export one engine into `onnx_dir`; returns the graph as Triton places it in a version folder.

    Below EXTERNAL_DATA_THRESHOLD_BYTES of parameters: one file, `<name>.onnx`. Above (protobuf
    cannot hold 2 GB): Triton's directory form, a folder `<name>.onnx/` holding `model.onnx` and its
    external data `model.onnx.data`, which is copied whole to `<engine>/1/model.onnx/`.
    """
    parameter_bytes = sum(p.numel() * p.element_size() for p in engine.module.parameters())
    external_data = parameter_bytes > EXTERNAL_DATA_THRESHOLD_BYTES
    artifact = onnx_dir / f"{name}.onnx"
    if external_data:
        artifact.mkdir()
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic_shapes = {input_name: {0: batch} for input_name in engine.input_names}
    if name in llm_engines():
        dynamic_shapes["visual_tokens"] = {
            0: batch,
            1: torch.export.Dim("visual_tokens", max=MAX_VISUAL_TOKENS),
        }
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter narrates every step; failures still raise
        torch.onnx.export(
            engine.module,
            tuple(inputs[input_name] for input_name in engine.input_names),
            str(onnx_model_file(artifact)),
            input_names=list(engine.input_names),
            output_names=list(engine.output_names),
            dynamic_shapes=tuple(dynamic_shapes[input_name] for input_name in engine.input_names),
            opset_version=opset,
            dynamo=True,
            optimize=False,
            external_data=external_data,
            verbose=False,
        )
    return artifact


def graph_io(path: Path) -> tuple[list[dict], list[dict]]:
    """The inputs and outputs an ONNX file declares: [{"name", "dtype" (numpy), "shape" (-1 = dynamic)}].

    Shapes include the batch axis. Read from the file itself, so configs written from them cannot
    disagree with the graph.
    """
    model = onnx.load(str(onnx_model_file(path)), load_external_data=False)

    def describe(value_info) -> dict:
        tensor_type = value_info.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        shape = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim]
        return {"name": value_info.name, "dtype": dtype, "shape": shape}

    return [describe(v) for v in model.graph.input], [describe(v) for v in model.graph.output]
