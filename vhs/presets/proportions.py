"""The `proportions` benchmark preset: the published architectures at the published compute mix.

Seeded random weights, built in code (nothing is downloaded), sized so that one candidate costs the
same *proportions* of compute as SANA-Sprint 1.6B + DC-AE f32c32 + Gemma-2-2B + a Qwen2.5-0.5B
verifier + CLIP ViT-L/14-336 at 1024 px: every component's FLOPs relative to the DiT within 1.25x of
the published ratio (`make flops PRESET=proportions`, tested in tests/test_proportions_preset.py).
Token counts are the published ones over 4 (a 16 x 16 latent: 256 DiT tokens for SANA-Sprint's 1024,
75 text tokens for 300, 12 x 12 = 144 CLIP patches for 24 x 24), so every visual encoder gives the
published share of the DiT's tokens; widths are ~1/20 to 1/8 of the published ones. One candidate
costs ~1.6 GFLOP of DiT, ~1,900x less than the published 2,970: a request at N = 4 takes a few
hundred ms of compute on one CPU core per engine, against ~1 ms of per-call overhead.

It exists to measure speed ratios (VHS vs the CLIP verifier) where compute, not per-call overhead,
dominates a request, as it does on a GPU at 1024 px. Its images are noise: never use it for quality.
"""

from __future__ import annotations

from . import Preset, PresetConfig
from .builder import ComponentSizes, build_preset
from .shapes_builder import tokenizer_corpus

VERSION = 3  # bump when anything below changes, so cached copies are rebuilt
SEED = 0

CONFIG = PresetConfig(
    name="proportions",
    split_block=7,  # l*: block 7 of 20, as in the paper
    guidance_scale=4.5,
    text_max_length=75,  # SANA-Sprint's 300 over 4, as the DiT's tokens (the prompts take ~15)
    question_max_length=64,  # the question after <image> is ~45 tokens for the benchmark prompts
    default_candidates=4,
    max_candidates=16,
)

SIZES = ComponentSizes(
    vocab_size=1000,  # the learned vocabularies stop below this on the corpus
    image_size=128,  # three 2x upsamplings: 16 x 16 x 32 latents -> 128 x 128 x 3 pixels
    latent_channels=32,  # DC-AE f32c32's 32 channels: the AE-latent verifier reads 256 tokens of 32
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
    # DC-AE decoder: 16 x 16 latents, EfficientViT on the latent level; two layers per level but the
    # full-resolution one (published: three per level)
    vae_attention_head_dim=32,
    vae_encoder_channels=(32, 64, 128, 128),
    vae_decoder_channels=(32, 64, 128, 128),
    vae_scaling_factor=0.41407,  # DC-AE f32c32's
    vae_decoder_layers=(1, 2, 2, 2),
    # verifier LLMs: Qwen2 with width 128 (Qwen2.5-0.5B: 896), 2 layers (24)
    llm_width=128,
    llm_intermediate=448,
    llm_layers=2,
    llm_max_positions=2048,
    llm_initializer_range=0.2,  # wider than Qwen2's 0.02 so random verifiers give distinct scores
    # CLIP tower: width 128 (ViT-L: 1024), 3 layers (24), on the image resized to 84 px in 7 x 7
    # patches: 12 x 12 patches, 0.5625 of the DiT's tokens as ViT-L/14 at 336 px (576 of 1024)
    clip_width=128,
    clip_intermediate=384,
    clip_layers=3,
    clip_image_size=84,
    clip_patch_size=7,
)


def build_proportions() -> Preset:
    """Every component in memory, seeded random; nothing is downloaded."""
    return build_preset(CONFIG, SIZES, tokenizer_corpus(), SEED)
