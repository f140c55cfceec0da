"""The untrained `shapes` preset: its sizes, seeded random weights and tokenizers, built in code.

Widths are chosen so that the per-candidate FLOP proportions between DiT, VAE decoder, CLIP tower
and LLM stay within a factor of 2 of the published models at 1024 px (`benchmarks/flops.py` prints
the table). Training (`vhs/train/`) fills in the generator's weights; the verifier stays
seeded-random until its own training stage.
"""

from __future__ import annotations

import numpy as np

from ..shapes import prompt_text, sample_training_prompt
from ..verifier import VERIFIER_QUESTION
from . import Preset, PresetConfig
from .builder import ComponentSizes, build_preset

SEED = 0
IMAGE_SIZE = 64  # pixels; the autoencoder downsamples by 8 to an 8 x 8 latent
TOKENIZER_CORPUS_PROMPTS = 4000  # training prompts the two BPE vocabularies are learned on

CONFIG = PresetConfig(
    name="shapes",
    # l*: chosen on validation by quality per FLOP (docs/training.md): this small generator decides
    # late, so block 19 at CLIP Best-of-2's compute beats block 7 (the paper's choice) at its larger N.
    split_block=19,
    guidance_scale=4.5,
    text_max_length=24,  # the longest shapes prompt is 12 text-encoder tokens
    question_max_length=96,  # the question after <image> is ~80 tokens for the longest prompt
    default_candidates=4,
    max_candidates=16,
)

SIZES = ComponentSizes(
    vocab_size=400,
    image_size=IMAGE_SIZE,
    latent_channels=8,
    # text encoder: a 4-layer Gemma-2 of width 128
    text_width=128,
    text_intermediate=512,
    text_layers=4,
    text_heads=4,
    text_kv_heads=2,
    text_head_dim=32,
    # DiT: width 64
    dit_heads=2,
    dit_head_dim=32,
    # DC-AE: three 2x downsamplings, 64 x 64 x 3 pixels <-> 8 x 8 x 8 latents; the autoencoder
    # training sets `scaling_factor` to 1 / std of the latents
    vae_attention_head_dim=16,
    vae_encoder_channels=(16, 32, 64, 64),
    vae_decoder_channels=(32, 32, 64, 64),
    vae_scaling_factor=1.0,
    # verifier LLM (untrained here): a small Qwen2
    llm_width=64,
    llm_intermediate=256,
    llm_layers=2,
    llm_max_positions=512,
    llm_initializer_range=0.02,  # Qwen2's default
    # the CLIP baseline's vision tower (untrained here) on 64 x 64 pixels
    clip_width=64,
    clip_intermediate=256,
    clip_layers=3,
    # every verifier's connector reads the generator's prompt embedding (a 2-layer LLM reader does not
    # bind the prompt to the visual tokens well enough on its own: docs/training.md)
    connectors_read_prompt=True,
)


def tokenizer_corpus(num_prompts: int = TOKENIZER_CORPUS_PROMPTS) -> list[str]:
    """Training prompts (never the held-out evaluation prompts) plus the verifier's question."""
    rng = np.random.default_rng(SEED)
    prompts = [prompt_text(sample_training_prompt(rng)) for _ in range(num_prompts)]
    return prompts + [VERIFIER_QUESTION] * 50


def build_untrained_shapes() -> Preset:
    """Every component of the `shapes` preset, seeded random; the generator is then trained in vhs/train."""
    return build_preset(CONFIG, SIZES, tokenizer_corpus(), SEED)
