"""The untrained `shapes` preset: configs, seeded random weights and tokenizers, built in code.

The classes are exactly those of the published SANA-Sprint (Gemma-2 text encoder, `AutoencoderDC`,
a 20-block `SanaTransformer2DModel` with embedded guidance, `SCMScheduler`) and of the VHS verifier
(`Qwen2ForCausalLM`, `CLIPVisionModel`, `MLPConnector`s), so the split, export and serving code is
the one real checkpoints use. Widths are chosen so that the per-candidate FLOP proportions between
DiT, VAE decoder, CLIP tower and LLM stay within a factor of 2 of the published models at 1024 px
(`benchmarks/flops.py` prints the table). Training (`vhs/train/`) fills in the generator's weights;
the verifier stays seeded-random until its own training stage.
"""

from __future__ import annotations

import numpy as np
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

from ..shapes import prompt_text, sample_training_prompt
from ..verifier import VERIFIER_QUESTION, MLPConnector
from . import Preset, PresetConfig
from .tokenizers import build_gemma_tokenizer, build_qwen2_tokenizer

SEED = 0
IMAGE_SIZE = 64  # pixels; the autoencoder downsamples by 8 to an 8 x 8 latent
LATENT_CHANNELS = 8
SPLIT_BLOCK = 7  # l*: block 7 of 20, as in the paper
TEXT_MAX_LENGTH = 24  # the longest shapes prompt is 12 text-encoder tokens
QUESTION_MAX_LENGTH = 96  # the question after <image> is ~80 tokens for the longest prompt
TOKENIZER_CORPUS_PROMPTS = 4000  # training prompts the two BPE vocabularies are learned on


def tokenizer_corpus(num_prompts: int = TOKENIZER_CORPUS_PROMPTS) -> list[str]:
    """Training prompts (never the held-out evaluation prompts) plus the verifier's question."""
    rng = np.random.default_rng(SEED)
    prompts = [prompt_text(sample_training_prompt(rng)) for _ in range(num_prompts)]
    return prompts + [VERIFIER_QUESTION] * 50


def build_text_encoder(tokenizer) -> Gemma2Model:
    """A 4-layer Gemma-2 with width 128: the prompt embeddings the DiT cross-attends to."""
    return Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            max_position_embeddings=TEXT_MAX_LENGTH,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def build_transformer() -> SanaTransformer2DModel:
    """SANA-Sprint's DiT: 20 blocks (so block indices mean what they mean in the paper), width 64."""
    return SanaTransformer2DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=32,
        num_layers=20,
        num_cross_attention_heads=2,
        cross_attention_head_dim=32,
        cross_attention_dim=64,
        caption_channels=128,
        mlp_ratio=2.5,
        sample_size=IMAGE_SIZE // 8,
        patch_size=1,
        guidance_embeds=True,
        qk_norm="rms_norm_across_heads",
    )


def build_vae() -> AutoencoderDC:
    """A DC-AE with three 2x downsamplings: 64 x 64 x 3 pixels <-> 8 x 8 x LATENT_CHANNELS latents.

    `scaling_factor` is set by the autoencoder training to 1 / std of the latents.
    """
    return AutoencoderDC(
        in_channels=3,
        latent_channels=LATENT_CHANNELS,
        attention_head_dim=16,
        encoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(16, 32, 64, 64),
        decoder_block_out_channels=(32, 32, 64, 64),
        encoder_layers_per_block=(1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        encoder_qkv_multiscales=((), (), (), (5,)),
        decoder_qkv_multiscales=((), (), (), (5,)),
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=1.0,
    )


def build_llm(llm_tokenizer) -> Qwen2ForCausalLM:
    """The verifier LLM (untrained here): a small Qwen2."""
    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(llm_tokenizer),
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            pad_token_id=llm_tokenizer.pad_token_id,
            eos_token_id=llm_tokenizer.eos_token_id,
        )
    )


def build_clip_vision() -> CLIPVisionModel:
    """The baseline verifier's vision tower (untrained here): a small CLIP ViT on 64 x 64 pixels."""
    return CLIPVisionModel(
        CLIPVisionConfig(
            image_size=IMAGE_SIZE,
            patch_size=8,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=2,
            projection_dim=64,
        )
    )


def build_untrained_shapes() -> Preset:
    """Every component of the `shapes` preset, seeded random; the generator is then trained in vhs/train."""
    torch.manual_seed(SEED)
    corpus = tokenizer_corpus()
    tokenizer = build_gemma_tokenizer(corpus, vocab_size=400)
    llm_tokenizer = build_qwen2_tokenizer(corpus, vocab_size=400)
    transformer = build_transformer()
    vae = build_vae()
    llm = build_llm(llm_tokenizer)
    clip_vision = build_clip_vision()
    dit_width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    llm_width = llm.config.hidden_size
    return Preset(
        config=PresetConfig(
            name="shapes",
            split_block=SPLIT_BLOCK,
            guidance_scale=4.5,
            text_max_length=TEXT_MAX_LENGTH,
            question_max_length=QUESTION_MAX_LENGTH,
            default_candidates=4,
            max_candidates=16,
        ),
        tokenizer=tokenizer,
        text_encoder=build_text_encoder(tokenizer),
        transformer=transformer,
        vae=vae,
        scheduler=SCMScheduler(sigma_data=0.5, prediction_type="trigflow"),
        llm_tokenizer=llm_tokenizer,
        llm=llm,
        connector=MLPConnector(dit_width, llm_width),
        clip_vision=clip_vision,
        clip_connector=MLPConnector(clip_vision.config.hidden_size, llm_width, normalize_input=False),
        latent_connector=MLPConnector(vae.config.latent_channels, llm_width),
    )
