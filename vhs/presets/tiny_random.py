"""The `tiny-random` preset: the published architectures with tiny configs and seeded random weights.

It exists for fast tests of the split, export, parity and serving. The DiT keeps SANA-Sprint's 20
blocks and l* = 7 so block indices mean what they mean for the real model; widths are tiny.
"""

from __future__ import annotations

from ..verifier import VERIFIER_QUESTION
from . import Preset, PresetConfig
from .builder import ComponentSizes, build_preset

VERSION = 4  # bump when anything below changes, so cached copies are rebuilt
SEED = 0

CORPUS = [
    VERIFIER_QUESTION,
    "a photo of a red circle",
    "a photo of a blue square and a green triangle",
    "a photo of three yellow diamonds",
    "a photo of a purple cross left of an orange ring",
    "a photo of a cat above a dog",
]

CONFIG = PresetConfig(
    name="tiny-random",
    split_block=7,
    guidance_scale=4.5,
    text_max_length=32,
    question_max_length=96,
    default_candidates=4,
    max_candidates=8,
)

SIZES = ComponentSizes(
    vocab_size=400,
    image_size=32,  # two 2x downsamplings: 32 x 32 x 3 pixels <-> 8 x 8 x 4 latents
    latent_channels=4,
    text_width=32,
    text_intermediate=64,
    text_layers=2,
    text_heads=2,
    text_kv_heads=1,
    text_head_dim=16,
    dit_heads=2,
    dit_head_dim=8,
    vae_attention_head_dim=8,
    vae_encoder_channels=(8, 16, 16),
    vae_decoder_channels=(8, 16, 16),
    vae_scaling_factor=0.41407,
    llm_width=32,
    llm_intermediate=64,
    llm_layers=2,
    llm_max_positions=256,
    llm_initializer_range=0.2,  # wider than the default 0.02 so random verifiers give distinct scores
    clip_width=32,
    clip_intermediate=64,
    clip_layers=2,
)


def build_tiny_random() -> Preset:
    """Build every component in memory from tiny configs, seeded; nothing is downloaded."""
    preset = build_preset(CONFIG, SIZES, CORPUS * 20, SEED)
    # Non-trivial statistics, so the connector's input normalisation is exercised.
    preset.connector.input_var.uniform_(0.5, 2.0)
    return preset
