"""The `proportions` benchmark preset: the published architectures at the published compute mix.

Seeded random weights, built in code (nothing is downloaded), sized so that one candidate costs the
same *proportions* of compute as SANA-Sprint 1.6B + DC-AE f32c32 + Gemma-2-2B + a Qwen2.5-0.5B
verifier + CLIP ViT-L/14-336 at 1024 px: every component's FLOPs relative to the DiT within 1.25x of
the published ratio (`make flops PRESET=proportions`, tested in tests/test_proportions_preset.py).
Token counts are the published ones: 1024 DiT tokens (a 32 x 32 latent, patch 1), 300 text tokens,
576 CLIP patches (24 x 24), so the verifiers' LLMs read the published numbers of visual tokens;
widths are ~1/20 to 1/10 of the published ones, which takes ~400x fewer FLOPs.

It exists to measure speed ratios (VHS vs the CLIP verifier) where compute, not per-call overhead,
dominates a request, as it does on a GPU at 1024 px. Its images are noise: never use it for quality.
"""

from __future__ import annotations

from pathlib import Path

from . import Preset, PresetConfig
from .builder import ComponentSizes, build_preset, ensure_built
from .shapes_builder import tokenizer_corpus

VERSION = 1  # bump when anything below changes, so cached copies are rebuilt
SEED = 0

CONFIG = PresetConfig(
    name="proportions",
    split_block=7,  # l*: block 7 of 20, as in the paper
    guidance_scale=4.5,
    text_max_length=300,  # SANA-Sprint's: the DiT cross-attends to 300 text tokens
    question_max_length=64,  # the question after <image> is ~45 tokens for the benchmark prompts
    default_candidates=4,
    max_candidates=16,
)

SIZES = ComponentSizes(
    vocab_size=1000,  # the learned vocabularies stop below this on the corpus
    image_size=256,  # three 2x upsamplings: 32 x 32 x 32 latents -> 256 x 256 x 3 pixels
    latent_channels=32,  # DC-AE f32c32's 32 channels: the AE-latent verifier reads 1024 tokens of 32
    # text encoder: Gemma-2 with width 192 (Gemma-2-2B: 2304), 8 layers (26)
    text_width=192,
    text_intermediate=768,
    text_layers=8,
    text_heads=3,
    text_kv_heads=1,
    text_head_dim=64,
    # DiT: 20 blocks of width 96 (SANA-Sprint 1.6B: 2240), head size 32 as published
    dit_heads=3,
    dit_head_dim=32,
    # DC-AE decoder: 32 x 32 latents, two layers per level, EfficientViT on the latent level
    vae_attention_head_dim=32,
    vae_encoder_channels=(32, 64, 128, 128),
    vae_decoder_channels=(32, 64, 128, 128),
    vae_scaling_factor=0.41407,  # DC-AE f32c32's
    vae_decoder_layers=2,
    # verifier LLMs: Qwen2 with width 128 (Qwen2.5-0.5B: 896), 2 layers (24)
    llm_width=128,
    llm_intermediate=512,
    llm_layers=2,
    llm_max_positions=2048,
    llm_initializer_range=0.2,  # wider than Qwen2's 0.02 so random verifiers give distinct scores
    # CLIP tower: width 128 (ViT-L: 1024), 3 layers (24), on the image resized to 168 px in 7 x 7
    # patches: 24 x 24 patches as ViT-L/14 at 336 px
    clip_width=128,
    clip_intermediate=512,
    clip_layers=3,
    clip_image_size=168,
    clip_patch_size=7,
)


def build_proportions() -> Preset:
    """Every component in memory, seeded random; nothing is downloaded."""
    return build_preset(CONFIG, SIZES, tokenizer_corpus(), SEED)


def ensure_proportions() -> Path:
    """Build and save the preset once into the cache folder; return the folder."""
    return ensure_built("proportions", VERSION, build_proportions)
