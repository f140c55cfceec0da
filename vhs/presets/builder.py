"""Build a preset in code from a size table: the published classes, seeded random weights, tokenizers.

The classes are exactly those of the published SANA-Sprint (Gemma-2 text encoder, `AutoencoderDC`,
`SanaTransformer2DModel` with embedded guidance, `SCMScheduler`) and of the VHS verifier
(`Qwen2ForCausalLM`, `CLIPVisionModel`, `MLPConnector`s), so the split, export and serving code is
the one real checkpoints use. Only the sizes differ between `tiny-random` and `shapes`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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

from ..verifier import MLPConnector
from . import Preset, PresetConfig
from .tokenizers import build_gemma_tokenizer, build_qwen2_tokenizer


@dataclass(frozen=True)
class ComponentSizes:
    """Widths and depths of every component. The DiT always has SANA-Sprint's 20 blocks, so block
    indices (l* = 7, the paper's layer study) mean what they mean for the published model."""

    vocab_size: int  # of each of the two BPE tokenizers
    image_size: int
    latent_channels: int
    text_width: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_head_dim: int
    dit_heads: int
    dit_head_dim: int
    vae_attention_head_dim: int
    vae_encoder_channels: tuple[int, ...]  # one entry per level; each level but the first downsamples 2x
    vae_decoder_channels: tuple[int, ...]
    vae_scaling_factor: float
    llm_width: int
    llm_intermediate: int
    llm_layers: int
    llm_max_positions: int
    llm_initializer_range: float
    clip_width: int
    clip_intermediate: int
    clip_layers: int
    # The tower reads the decoded image resized to clip_image_size (CLIP ViT-L/14-336 reads a
    # 1024 px SANA-Sprint image at 336 px); None: the image size itself.
    clip_image_size: int | None = None
    clip_patch_size: int = 8
    llm_heads: int = 2
    llm_kv_heads: int = 1
    # ResBlocks / EfficientViT blocks per decoder level: one count for every level, or one per level
    # from the highest resolution to the latent's (as DC-AE's decoder_layers_per_block)
    vae_decoder_layers: int | tuple[int, ...] = 1
    # The verifiers' connectors also read the generator's prompt embedding (vhs.verifier.MLPConnector's
    # prompt_width); False: the paper's connectors.
    connectors_read_prompt: bool = False


def build_preset(config: PresetConfig, sizes: ComponentSizes, corpus: list[str], seed: int) -> Preset:
    """Every component of a preset, seeded random, with tokenizers learned on `corpus`."""
    torch.manual_seed(seed)
    tokenizer = build_gemma_tokenizer(corpus, vocab_size=sizes.vocab_size)
    llm_tokenizer = build_qwen2_tokenizer(corpus, vocab_size=sizes.vocab_size)
    # The construction order fixes the seeded weights: changing it changes every trained preset's start.
    transformer = build_transformer(sizes)
    vae = build_vae(sizes)
    llm = build_llm(sizes, llm_tokenizer)
    clip_vision = build_clip_vision(sizes)
    text_encoder = build_text_encoder(sizes, tokenizer, config.text_max_length)
    clip_llm, latent_llm = build_llm(sizes, llm_tokenizer), build_llm(sizes, llm_tokenizer)
    dit_width = sizes.dit_heads * sizes.dit_head_dim
    prompt_width = sizes.text_width if sizes.connectors_read_prompt else 0
    return Preset(
        config=config,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=SCMScheduler(sigma_data=0.5, prediction_type="trigflow"),
        llm_tokenizer=llm_tokenizer,
        verifier={
            "llm": llm,
            "clip_llm": clip_llm,
            "latent_llm": latent_llm,
            "connector": MLPConnector(dit_width, sizes.llm_width, prompt_width=prompt_width),
            "clip_vision": clip_vision,
            "clip_connector": MLPConnector(
                sizes.clip_width, sizes.llm_width, normalize_input=False, prompt_width=prompt_width
            ),
            "latent_connector": MLPConnector(
                sizes.latent_channels, sizes.llm_width, prompt_width=prompt_width
            ),
        },
    )


def cache_folder(name: str, version: int) -> Path:
    """Where a preset built in code lives: `$VHS_CACHE_DIR/presets/<name>-v<version>` (`VHS_CACHE_DIR`
    defaults to `./build`); a new version is a new folder, so a stale build is never read."""
    return Path(os.environ.get("VHS_CACHE_DIR", Path.cwd() / "build")) / "presets" / f"{name}-v{version}"


def ensure_built(name: str, version: int, build: Callable[[], Preset]) -> Path:
    """Build a preset in code and save it into its `cache_folder`, unless it is there already; the
    folder. Only `vhs-build-preset` (vhs/presets/build.py) calls this: loading never builds."""
    folder = cache_folder(name, version)
    save_once(folder, build)
    return folder


def save_once(folder: Path, build: Callable[[], Preset]) -> None:
    """Save `build()` into `folder` unless a preset is there already. Written to a temporary sibling
    and renamed, so a concurrent or interrupted build never leaves a half-written preset behind."""
    if (folder / "preset.json").is_file():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    build().save_pretrained(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process was first
        shutil.rmtree(staging)
        if not (folder / "preset.json").is_file():
            raise


def build_text_encoder(sizes: ComponentSizes, tokenizer, max_length: int) -> Gemma2Model:
    """A Gemma-2: the prompt embeddings the DiT cross-attends to."""
    return Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=sizes.text_width,
            intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers,
            num_attention_heads=sizes.text_heads,
            num_key_value_heads=sizes.text_kv_heads,
            head_dim=sizes.text_head_dim,
            max_position_embeddings=max_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def build_transformer(sizes: ComponentSizes) -> SanaTransformer2DModel:
    """SANA-Sprint's DiT: 20 blocks, patch size 1 on the latent, cross-attention to the text encoder."""
    return SanaTransformer2DModel(
        in_channels=sizes.latent_channels,
        out_channels=sizes.latent_channels,
        num_attention_heads=sizes.dit_heads,
        attention_head_dim=sizes.dit_head_dim,
        num_layers=20,
        num_cross_attention_heads=sizes.dit_heads,
        cross_attention_head_dim=sizes.dit_head_dim,
        cross_attention_dim=sizes.dit_heads * sizes.dit_head_dim,
        caption_channels=sizes.text_width,
        mlp_ratio=2.5,
        sample_size=sizes.image_size // vae_downsampling(sizes),
        patch_size=1,
        guidance_embeds=True,
        qk_norm="rms_norm_across_heads",
    )


def vae_downsampling(sizes: ComponentSizes) -> int:
    return 2 ** (len(sizes.vae_encoder_channels) - 1)


def build_vae(sizes: ComponentSizes) -> AutoencoderDC:
    """A DC-AE: ResBlock levels, then one EfficientViT level with multi-scale linear attention."""
    levels = len(sizes.vae_encoder_channels)
    block_types = ("ResBlock",) * (levels - 1) + ("EfficientViTBlock",)
    qkv_multiscales = ((),) * (levels - 1) + ((5,),)
    decoder_layers = sizes.vae_decoder_layers
    if isinstance(decoder_layers, int):
        decoder_layers = (decoder_layers,) * levels
    return AutoencoderDC(
        in_channels=3,
        latent_channels=sizes.latent_channels,
        attention_head_dim=sizes.vae_attention_head_dim,
        encoder_block_types=block_types,
        decoder_block_types=block_types,
        encoder_block_out_channels=sizes.vae_encoder_channels,
        decoder_block_out_channels=sizes.vae_decoder_channels,
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=decoder_layers,
        encoder_qkv_multiscales=qkv_multiscales,
        decoder_qkv_multiscales=qkv_multiscales,
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=sizes.vae_scaling_factor,
    )


def build_llm(sizes: ComponentSizes, llm_tokenizer) -> Qwen2ForCausalLM:
    """The verifier LLM: a Qwen2 that reads the visual tokens through `inputs_embeds`."""
    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(llm_tokenizer),
            hidden_size=sizes.llm_width,
            intermediate_size=sizes.llm_intermediate,
            num_hidden_layers=sizes.llm_layers,
            num_attention_heads=sizes.llm_heads,
            num_key_value_heads=sizes.llm_kv_heads,
            max_position_embeddings=sizes.llm_max_positions,
            tie_word_embeddings=True,
            initializer_range=sizes.llm_initializer_range,
            pad_token_id=llm_tokenizer.pad_token_id,
            eos_token_id=llm_tokenizer.eos_token_id,
        )
    )


def build_clip_vision(sizes: ComponentSizes) -> CLIPVisionModel:
    """The baseline verifier's vision tower: a CLIP ViT on the decoded image (resized to its own size)."""
    return CLIPVisionModel(
        CLIPVisionConfig(
            image_size=sizes.clip_image_size or sizes.image_size,
            patch_size=sizes.clip_patch_size,
            hidden_size=sizes.clip_width,
            intermediate_size=sizes.clip_intermediate,
            num_hidden_layers=sizes.clip_layers,
            num_attention_heads=2,
            projection_dim=sizes.clip_width,
        )
    )
