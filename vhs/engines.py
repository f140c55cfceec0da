"""The engines: the exact `nn.Module`s that become ONNX graphs / TensorRT plans / Triton models.

The reference pipeline runs these same modules in PyTorch, the exporter traces them, and the
orchestrator calls their graphs by the names below, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .dit_split import PREFIX_INPUTS, PREFIX_OUTPUTS, SUFFIX_INPUTS, SUFFIX_OUTPUTS, DiTPrefix, DiTSuffix
from .engine_names import (
    CLIP_VISION,
    CONNECTOR,
    DIT_PREFIX,
    DIT_SUFFIX,
    LATENT_CONNECTOR,
    TEXT_ENCODER,
    VAE_DECODER,
)
from .export_friendly import use_export_friendly_attention
from .modes import MODES, llm_engines
from .presets import Preset
from .verifier import ClipVisualEncoder, LatentVisualEncoder, YesNoScorer


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) (B, S) int64 -> prompt_embeds (B, S, width): last hidden state."""

    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids, attention_mask):
        return self.text_encoder(input_ids, attention_mask=attention_mask).last_hidden_state


class VAEDecoder(nn.Module):
    """denoised_latents (B, C, h, w) -> images (B, 3, H, W) float in [0, 1], as SanaSprintPipeline decodes."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, denoised_latents):
        images = self.vae.decode(denoised_latents / self.vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1)


@dataclass(frozen=True)
class Engine:
    """One exportable module with the names of its graph inputs and outputs, in call order."""

    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.module(*(inputs[name] for name in self.input_names))
        if not isinstance(outputs, tuple):
            outputs = (outputs,)
        return dict(zip(self.output_names, outputs, strict=True))


# The visual encoder of each verifier mode (vhs/modes.py), by engine name: preset -> module that maps
# what the mode reads (one input, named as the generation stage outputs it) to `visual_tokens`.
VISUAL_ENCODERS: dict[str, Callable[[Preset], Engine]] = {
    CONNECTOR: lambda preset: Engine(preset.connector, ("hidden_states",), ("visual_tokens",)),
    CLIP_VISION: lambda preset: Engine(
        ClipVisualEncoder(preset.clip_vision, preset.clip_connector), ("images",), ("visual_tokens",)
    ),
    LATENT_CONNECTOR: lambda preset: Engine(
        LatentVisualEncoder(preset.latent_connector), ("denoised_latents",), ("visual_tokens",)
    ),
}


def build_engines(preset: Preset) -> dict[str, Engine]:
    """Every engine of a preset, keyed by its Triton model name; modules in eval mode.

    The generation chain, plus the visual encoder and LLM of every mode in the mode table. Every LLM
    engine the table names is a `YesNoScorer` on the preset's LLM of the same name (each verifier
    fine-tunes its own).
    """
    sigma_data = preset.scheduler.config.sigma_data
    use_export_friendly_attention(preset.transformer)
    split_block = preset.config.split_block
    prompt_tokenizer = preset.prompt_tokenizer
    engines = {
        TEXT_ENCODER: Engine(
            TextEncoder(preset.text_encoder), ("input_ids", "attention_mask"), ("prompt_embeds",)
        ),
        DIT_PREFIX: Engine(
            DiTPrefix(preset.transformer, split_block, sigma_data), PREFIX_INPUTS, PREFIX_OUTPUTS
        ),
        DIT_SUFFIX: Engine(
            DiTSuffix(preset.transformer, split_block, sigma_data), SUFFIX_INPUTS, SUFFIX_OUTPUTS
        ),
        VAE_DECODER: Engine(VAEDecoder(preset.vae), ("denoised_latents",), ("images",)),
    }
    for mode in MODES.values():
        if mode.verifies:
            engines[mode.visual_encoder] = VISUAL_ENCODERS[mode.visual_encoder](preset)
    for llm in llm_engines():
        engines[llm] = Engine(
            YesNoScorer(
                getattr(preset, llm),
                prompt_tokenizer.question_prefix_ids,
                prompt_tokenizer.yes_token_id,
                prompt_tokenizer.no_token_id,
            ),
            ("visual_tokens", "question_ids", "question_length"),
            ("yes_no_logits", "yes_probability"),
        )
    for engine in engines.values():
        engine.module.eval()
    return engines
