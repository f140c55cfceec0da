"""The `tiny-random` preset: the published architectures with tiny configs and seeded random weights.

It exists for fast tests of the split, export, parity and serving. The DiT keeps SANA-Sprint's 20
blocks and l* = 7 so block indices mean what they mean for the real model; widths are tiny.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel, SCMScheduler
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    Gemma2Config,
    Gemma2Model,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ..verifier import VERIFIER_QUESTION, MLPConnector
from . import Preset, PresetConfig
from .tokenizers import build_gemma_tokenizer, build_qwen2_tokenizer

VERSION = 1  # bump when anything below changes, so cached copies are rebuilt
SEED = 0

CORPUS = [
    VERIFIER_QUESTION,
    "a photo of a red circle",
    "a photo of a blue square and a green triangle",
    "a photo of three yellow diamonds",
    "a photo of a purple cross left of an orange ring",
    "a photo of a cat above a dog",
]


def build_tiny_random() -> Preset:
    """Build every component in memory from tiny configs, seeded; nothing is downloaded."""
    torch.manual_seed(SEED)
    corpus = CORPUS * 20
    tokenizer = build_gemma_tokenizer(corpus, vocab_size=400)
    llm_tokenizer = build_qwen2_tokenizer(corpus, vocab_size=400)

    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=20,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=32,
        mlp_ratio=2.5,
        sample_size=8,
        patch_size=1,
        guidance_embeds=True,
        qk_norm="rms_norm_across_heads",
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=8,
        encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 16, 16),
        decoder_block_out_channels=(8, 16, 16),
        encoder_layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1),
        encoder_qkv_multiscales=((), (), (5,)),
        decoder_qkv_multiscales=((), (), (5,)),
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    scheduler = SCMScheduler(sigma_data=0.5, prediction_type="trigflow")
    llm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(llm_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            initializer_range=0.2,  # wider than the default 0.02 so random verifiers give distinct scores
            pad_token_id=llm_tokenizer.pad_token_id,
            eos_token_id=llm_tokenizer.eos_token_id,
        )
    )
    clip_vision = CLIPVisionModel(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=32,
        )
    )
    dit_width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    llm_width = llm.config.hidden_size
    connector = MLPConnector(dit_width, llm_width)
    connector.input_var.uniform_(0.5, 2.0)  # non-trivial statistics, so the normalisation is exercised
    return Preset(
        config=PresetConfig(
            name="tiny-random",
            split_block=7,
            guidance_scale=4.5,
            text_max_length=32,
            question_max_length=96,
            default_candidates=4,
            max_candidates=8,
        ),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        llm_tokenizer=llm_tokenizer,
        llm=llm,
        connector=connector,
        clip_vision=clip_vision,
        clip_connector=MLPConnector(clip_vision.config.hidden_size, llm_width, normalize_input=False),
        latent_connector=MLPConnector(vae.config.latent_channels, llm_width),
    )


def ensure_tiny_random() -> Path:
    """Build and save the preset once into the cache folder; return the folder."""
    cache = Path(os.environ.get("VHS_CACHE_DIR", Path.cwd() / "build")) / "presets"
    folder = cache / f"tiny-random-v{VERSION}"
    if not (folder / "preset.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        # Write to a temporary sibling and rename, so a concurrent or interrupted build never
        # leaves a half-written preset behind.
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".tiny-random-"))
        build_tiny_random().save_pretrained(staging)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "preset.json").is_file():
                raise
    return folder
