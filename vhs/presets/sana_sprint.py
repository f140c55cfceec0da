"""The `sana-sprint` preset: `preset.json` settings for a SANA-Sprint checkpoint and a verifier folder.

The published generator is `Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers` (a diffusers
`SanaSprintPipeline` folder: 20 blocks, width 2240, Gemma-2 text encoder, 1024 x 1024 px from a
32 x 32 latent); the published VHS verifier reads the output of block 7. The values below are
SanaSprintPipeline's own defaults (one step at TrigFlow time pi/2, guidance 4.5, 300 prompt tokens,
and its default complex_human_instruction prepended to every prompt, as the authors run it).

A preset named `sana-sprint` serves the published architecture: `load_preset` refuses a generator
folder whose configs differ from PUBLISHED_ARCHITECTURE, naming the field. Weights of another
architecture (tiny test folders, a retrained DiT) are served under another name, which
`vhs-init-verifier --allow-architecture-mismatch` writes (CUSTOM_NAME): the choice is explicit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ..preset_config import PRESET_FILE, PresetConfig, PresetConfigError

NAME = "sana-sprint"
CUSTOM_NAME = "sana-sprint-custom"  # the same settings for weights of another architecture
# The published SANA-Sprint 1.6B 1024 px generator, as its folder's config.json files state it
# (`architecture` derives width and downsampling): DiT of 20 blocks, width 2240 (70 heads x 32), on
# a 32-channel 32 x 32 latent with patch size 1, reading Gemma-2-2B's 2304-wide embeddings; DC-AE
# f32c32 (32 latent channels, 32x downsampling: six levels).
PUBLISHED_ARCHITECTURE = {
    "transformer/config.json": {
        "num_layers": 20,
        "width (num_attention_heads x attention_head_dim)": 2240,
        "in_channels": 32,
        "caption_channels": 2304,
        "patch_size": 1,
        "sample_size": 32,
    },
    "vae/config.json": {
        "_class_name": "AutoencoderDC",
        "latent_channels": 32,
        "downsampling (2 ** (levels - 1) of decoder_block_out_channels)": 32,
    },
    "text_encoder/config.json": {"model_type": "gemma2", "hidden_size": 2304},
}
SPLIT_BLOCK = 7
GUIDANCE_SCALE = 4.5
TEXT_MAX_LENGTH = 300
# Qwen2 tokens of the question after <image>: ~30 of template and question, the rest for the prompt.
QUESTION_MAX_LENGTH = 160
DEFAULT_CANDIDATES = 4
MAX_CANDIDATES = 16
# What one 80 GB GPU holds beside the other engines (export/sizing.py computes it from the published
# shapes; tests/test_sizing.py checks it is what the computation gives): the fp32 DC-AE decoder needs
# ~2.3 GiB of activations per 1024 px image, so the clip baseline's 16 decodes run as two of 8.
ENGINE_MAX_BATCH = {"vae_decoder": 8}


def published_models_on_meta() -> dict:
    """The published networks (SANA-Sprint 1.6B DiT and DC-AE f32c32 at 1024 px, Gemma-2-2B,
    Qwen2.5-0.5B, CLIP ViT-L/14-336) on torch's meta device: shapes without weights, for counting
    FLOPs and memory. {"transformer", "vae", "text_encoder", "llm", "clip_vision"}."""
    import torch
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        Gemma2Config,
        Gemma2Model,
        Qwen2Config,
        Qwen2Model,
    )

    with torch.device("meta"):
        return {
            "transformer": SanaTransformer2DModel(
                in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32, num_layers=20,
                num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
                caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1, guidance_embeds=True,
                qk_norm="rms_norm_across_heads",
            ),
            "vae": AutoencoderDC(
                in_channels=3, latent_channels=32, attention_head_dim=32,
                encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
                decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
                encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
                encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
                decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
                upsample_block_type="interpolate", downsample_block_type="Conv",
                decoder_norm_types="rms_norm", decoder_act_fns="silu",
            ),
            "text_encoder": Gemma2Model(Gemma2Config(
                vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256,
            )),
            "llm": Qwen2Model(Qwen2Config(
                vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2,
            )),
            "clip_vision": CLIPVisionModel(CLIPVisionConfig(
                image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                num_hidden_layers=24, num_attention_heads=16,
            )),
        }  # fmt: skip


def sana_sprint_config(generator_path: str, verifier_path: str, **overrides) -> PresetConfig:
    """The PresetConfig of a SANA-Sprint preset (SanaSprintPipeline's complex_human_instruction on);
    `overrides` replace any other field."""
    from .folders import diffusers_complex_human_instruction

    settings = {
        "name": NAME,
        "complex_human_instruction": diffusers_complex_human_instruction(),
        "engine_max_batch": ENGINE_MAX_BATCH,
        "split_block": SPLIT_BLOCK,
        "guidance_scale": GUIDANCE_SCALE,
        "text_max_length": TEXT_MAX_LENGTH,
        "question_max_length": QUESTION_MAX_LENGTH,
        "default_candidates": DEFAULT_CANDIDATES,
        "max_candidates": MAX_CANDIDATES,
        "generator_path": generator_path,
        "verifier_path": verifier_path,
        **overrides,
    }
    return PresetConfig(**settings)


def write_preset_json(folder: str | os.PathLike, config: PresetConfig) -> Path:
    """Write `folder/preset.json` (without `modes`: the verifier folder's contents decide them;
    diffusers' default complex_human_instruction as `true`)."""
    from .folders import diffusers_complex_human_instruction

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in asdict(config).items() if key != "modes"}
    if tuple(config.complex_human_instruction) == diffusers_complex_human_instruction():
        settings["complex_human_instruction"] = True
    settings["engine_max_batch"] = dict(config.engine_max_batch)
    path = folder / PRESET_FILE
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def architecture(generator: str | os.PathLike) -> dict[str, dict]:
    """The fields of PUBLISHED_ARCHITECTURE as a generator folder's config.json files state them
    (None where a file or key is missing)."""
    folder = Path(generator)

    def read(name: str) -> dict:
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else {}

    transformer, vae, text_encoder = (read(name) for name in PUBLISHED_ARCHITECTURE)
    heads, head_dim = transformer.get("num_attention_heads"), transformer.get("attention_head_dim")
    levels = vae.get("decoder_block_out_channels")
    return {
        "transformer/config.json": {
            "num_layers": transformer.get("num_layers"),
            "width (num_attention_heads x attention_head_dim)": heads * head_dim
            if heads and head_dim
            else None,
            "in_channels": transformer.get("in_channels"),
            "caption_channels": transformer.get("caption_channels"),
            "patch_size": transformer.get("patch_size"),
            "sample_size": transformer.get("sample_size"),
        },
        "vae/config.json": {
            "_class_name": vae.get("_class_name"),
            "latent_channels": vae.get("latent_channels"),
            "downsampling (2 ** (levels - 1) of decoder_block_out_channels)": 2 ** (len(levels) - 1)
            if levels
            else None,
        },
        "text_encoder/config.json": {
            "model_type": text_encoder.get("model_type"),
            "hidden_size": text_encoder.get("hidden_size"),
        },
    }


def check_published_architecture(generator: str | os.PathLike) -> None:
    """Raise PresetConfigError naming the first field where the generator folder is not the published
    SANA-Sprint 1.6B 1024 px architecture (a hub id, not a local folder, is not checked here)."""
    if not Path(generator).is_dir():
        return
    found = architecture(generator)
    for file, fields in PUBLISHED_ARCHITECTURE.items():
        for field, published in fields.items():
            if found[file][field] != published:
                raise PresetConfigError(
                    f"generator {generator}: {file} {field} is {found[file][field]!r}, the published "
                    f"SANA-Sprint 1.6B has {published!r}: the {NAME!r} preset serves the published "
                    f"architecture (for other weights name the preset {CUSTOM_NAME!r}: vhs-init-verifier "
                    "--allow-architecture-mismatch)"
                )
