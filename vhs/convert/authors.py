"""`vhs-convert`: the authors' released verifier checkpoints -> this project's verifier folders.

    vhs-convert --checkpoint vhs-hidden-verifier --mean block_7_mean_bf16.pt \
        --variance block_7_variance_bf16.pt --output verifier
    vhs-convert --checkpoint vhs-mllm-clip-verifier --clip-vision clip-vit-large-patch14-336 \
        --output clip-verifier

The released checkpoints are LLaVA-style (`llava_qwen`: a Qwen2 config with `mm_*` keys; weights
`model.layers.*`, `model.embed_tokens.*`, `lm_head.*` and the projector `model.mm_projector.{0,2}.*`,
LLaVA's `mlp2x_gelu`: Linear, GELU, Linear). They become:

    <output>/tokenizer/                  the checkpoint's own tokenizer and chat template
    <output>/llm/, connector/            hidden-state verifier: Qwen2ForCausalLM (the checkpoint minus
                                         the projector) and the projector + the hidden-state statistics
    <output>/clip_llm/, clip_vision/, clip_connector/   CLIP baseline: its Qwen2ForCausalLM, the CLIP
                                         tower and the projector

Both checkpoints may be converted into one folder (each verifier keeps its own LLM; the tokenizer,
shared, must be the same), which then serves both modes.

The statistics ship as pickled tensors: they are read once here with `torch.load(weights_only=True)`
(which refuses anything but tensors) and re-saved as safetensors inside the connector.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

from ..verifier import MLPConnector

PROJECTOR_PREFIX = "model.mm_projector."
VISION_TOWER_PREFIX = "model.vision_tower."
PROJECTOR_TYPE = "mlp2x_gelu"
# LLaVA's additions to the Qwen2 config (besides the `mm_*` keys); the rest is Qwen2's own.
LLAVA_KEYS = (
    "model_type",
    "architectures",
    "auto_map",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "unfreeze_mm_vision_tower",
    "use_mm_proj",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-convert", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the authors' verifier folder")
    parser.add_argument("--output", type=Path, required=True, help="the verifier folder to write")
    parser.add_argument("--mean", type=Path, help="hidden-state mean (block_7_mean_bf16.pt)")
    parser.add_argument("--variance", type=Path, help="hidden-state variance (block_7_variance_bf16.pt)")
    parser.add_argument("--clip-vision", help="the CLIP tower of the CLIP baseline (folder or hub id)")
    return parser


def read_llava_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json as a dict, every tensor of the checkpoint's safetensors files)."""
    config = json.loads((folder / "config.json").read_text())
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"--checkpoint {folder} holds no .safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(file))
    return config, weights


def split_llava_weights(
    config: dict, weights: dict[str, torch.Tensor]
) -> tuple[Qwen2ForCausalLM, dict[str, torch.Tensor]]:
    """The Qwen2 LLM (weights loaded) and the projector's tensors {"0.weight", ..., "2.bias"}."""
    projector_type = config.get("mm_projector_type")
    if projector_type != PROJECTOR_TYPE:
        raise ValueError(f"mm_projector_type must be {PROJECTOR_TYPE!r}, got {projector_type!r}")
    qwen2_config = Qwen2Config(
        **{key: value for key, value in config.items() if key not in LLAVA_KEYS and not key.startswith("mm_")}
    )
    qwen2_config.architectures = ["Qwen2ForCausalLM"]
    projector = {k[len(PROJECTOR_PREFIX) :]: v for k, v in weights.items() if k.startswith(PROJECTOR_PREFIX)}
    llm_weights = {
        key: value
        for key, value in weights.items()
        if not key.startswith((PROJECTOR_PREFIX, VISION_TOWER_PREFIX))
    }
    llm = Qwen2ForCausalLM(qwen2_config).to(next(iter(llm_weights.values())).dtype)
    missing, unexpected = llm.load_state_dict(llm_weights, strict=False)
    tied = {"lm_head.weight"} if qwen2_config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"the checkpoint is not a Qwen2 LLM plus a projector: missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return llm, projector


def projector_connector(projector: dict[str, torch.Tensor], normalize_input: bool) -> MLPConnector:
    """LLaVA's mlp2x_gelu tensors -> an MLPConnector with the same weights (in their dtype)."""
    out_features, in_features = projector["0.weight"].shape
    connector = MLPConnector(in_features, out_features, normalize_input=normalize_input)
    connector.linear_1.load_state_dict({"weight": projector["0.weight"], "bias": projector["0.bias"]})
    connector.linear_2.load_state_dict({"weight": projector["2.weight"], "bias": projector["2.bias"]})
    return connector


def read_statistic(path: Path, size: int) -> torch.Tensor:
    """One pickled per-channel statistic -> float32 (size,); only tensors are unpickled."""
    statistic = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(statistic, torch.Tensor) or statistic.numel() != size:
        raise ValueError(
            f"{path} must hold a tensor of {size} values, got {getattr(statistic, 'shape', statistic)}"
        )
    return statistic.reshape(size).float()  # bf16 values are exact in float32


def convert(
    checkpoint: Path,
    output: Path,
    mean: Path | None = None,
    variance: Path | None = None,
    clip_vision: str | None = None,
) -> list[str]:
    """Write the verifier folder; returns the folders written. Hidden-state verifier: `mean` and
    `variance` are required; CLIP baseline: `clip_vision` is."""
    config, weights = read_llava_checkpoint(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if not tokenizer.chat_template:
        raise ValueError(f"--checkpoint {checkpoint}: its tokenizer has no chat template")
    llm, projector = split_llava_weights(config, weights)
    parts: dict[str, object] = {}
    if clip_vision is None:
        if mean is None or variance is None:
            raise ValueError("the hidden-state verifier needs --mean and --variance (or give --clip-vision)")
        connector = projector_connector(projector, normalize_input=True)
        size = connector.config.in_features
        connector.input_mean.copy_(read_statistic(mean, size))
        connector.input_var.copy_(read_statistic(variance, size))
        parts |= {"llm": llm, "connector": connector}
    else:
        tower = CLIPVisionModel.from_pretrained(clip_vision)
        parts |= {"clip_llm": llm, "clip_vision": tower}
        parts["clip_connector"] = projector_connector(projector, normalize_input=False)
    shared = output / "tokenizer"
    if shared.is_dir() and AutoTokenizer.from_pretrained(shared).get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"{shared} holds another vocabulary: the verifiers of one folder share their tokenizer"
        )
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(shared)
    for name, part in parts.items():
        part.save_pretrained(output / name)
    return ["tokenizer", *parts]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = convert(args.checkpoint, args.output, args.mean, args.variance, args.clip_vision)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as error:
        print(f"vhs-convert: error: {error}", file=sys.stderr)
        return 2
    print(f"verifier folder {args.output}: {', '.join(f'{name}/' for name in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
