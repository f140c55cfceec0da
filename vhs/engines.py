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
from .modes import GENERATION_CHAIN, MODES, all_engines, llm_engines
from .preset_config import PresetConfig
from .presets import Preset
from .verifier import AnswerTokenScorer, ClipVisualEncoder, LatentVisualEncoder, YesNoScorer


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) (B, S) int64 -> prompt_embeds (B, len(positions), width): the last
    hidden state at `positions` (`PromptTokenizer.text_positions`: all S of them without a
    complex_human_instruction; the first and the last ones with it, as SanaSprintPipeline keeps)."""

    def __init__(self, text_encoder: nn.Module, positions: list[int]):
        super().__init__()
        self.text_encoder = text_encoder
        self.positions = positions

    def forward(self, input_ids, attention_mask):
        prompt_embeds = self.text_encoder(input_ids, attention_mask=attention_mask).last_hidden_state
        if self.positions != list(range(input_ids.shape[1])):
            prompt_embeds = prompt_embeds[:, self.positions]
        return prompt_embeds


class VAEDecoder(nn.Module):
    """denoised_latents (B, C, h, w) -> images (B, 3, H, W) float in [0, 1], as SanaSprintPipeline decodes."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, denoised_latents):
        latents = denoised_latents.to(self.vae.dtype)  # SanaSprintPipeline decodes in the VAE's dtype
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1).float()


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


def build_scorer(preset: Preset, llm: str) -> YesNoScorer:
    """The LLM half of a verifier: the preset's LLM named `llm` (each verifier fine-tunes its own),
    scored with the preset's `score_rule`."""
    prompt_tokenizer = preset.prompt_tokenizer
    token_ids = (
        prompt_tokenizer.question_prefix_ids,
        prompt_tokenizer.yes_token_id,
        prompt_tokenizer.no_token_id,
    )
    if preset.config.score_rule == "answer_token":
        tokenizer = preset.llm_tokenizer
        yes_answer_ids = [
            i for i in range(len(tokenizer)) if "yes" in tokenizer.decode([i], skip_special_tokens=True)
        ]
        return AnswerTokenScorer(getattr(preset, llm), *token_ids, yes_answer_ids)
    return YesNoScorer(getattr(preset, llm), *token_ids)


# The preset components each engine is built from (tokenizers and the scheduler are always loaded).
# The exporter loads one group of components at a time, so a 10 GB text encoder and a 6 GB DiT are
# never in memory together.
ENGINE_COMPONENTS: dict[str, tuple[str, ...]] = {
    TEXT_ENCODER: ("text_encoder",),
    DIT_PREFIX: ("transformer",),
    DIT_SUFFIX: ("transformer",),
    VAE_DECODER: ("vae",),
    CONNECTOR: ("connector",),
    CLIP_VISION: ("clip_vision", "clip_connector"),
    LATENT_CONNECTOR: ("latent_connector",),
    **{llm: (llm,) for llm in llm_engines()},  # each verifier's own LLM, in the folder of that name
}


def served_engines(config: PresetConfig) -> list[str]:
    """The engines of the modes a preset serves, in the order of the mode table's `all_engines()`:
    the text encoder, the generation chain, the served visual encoders and their LLMs."""
    served = [MODES[name] for name in config.modes if MODES[name].verifies]
    wanted = {TEXT_ENCODER, *GENERATION_CHAIN} | {m.visual_encoder for m in served} | {m.llm for m in served}
    return [name for name in all_engines() if name in wanted]


def build_engine(preset: Preset, name: str) -> Engine:
    """One engine from the components it needs (ENGINE_COMPONENTS; the others may be None); eval mode.

    Every LLM engine the mode table names is a scorer on the preset's LLM of the same name.
    """
    if name in (DIT_PREFIX, DIT_SUFFIX):
        use_export_friendly_attention(preset.transformer)
        split = (preset.transformer, preset.config.split_block, preset.scheduler.config.sigma_data)
    builders: dict[str, Callable[[], Engine]] = {
        TEXT_ENCODER: lambda: Engine(
            TextEncoder(preset.text_encoder, preset.prompt_tokenizer.text_positions),
            ("input_ids", "attention_mask"),
            ("prompt_embeds",),
        ),
        DIT_PREFIX: lambda: Engine(DiTPrefix(*split), PREFIX_INPUTS, PREFIX_OUTPUTS),
        DIT_SUFFIX: lambda: Engine(DiTSuffix(*split), SUFFIX_INPUTS, SUFFIX_OUTPUTS),
        VAE_DECODER: lambda: Engine(VAEDecoder(preset.vae), ("denoised_latents",), ("images",)),
        **{
            encoder: (lambda encoder=encoder: VISUAL_ENCODERS[encoder](preset)) for encoder in VISUAL_ENCODERS
        },
        **{
            llm: lambda llm=llm: Engine(
                build_scorer(preset, llm),
                ("visual_tokens", "question_ids", "question_length"),
                ("yes_no_logits", "yes_probability"),
            )
            for llm in llm_engines()
        },
    }
    engine = builders[name]()
    engine.module.eval()
    return engine


def build_engines(preset: Preset) -> dict[str, Engine]:
    """Every engine of the modes a preset serves (`config.modes`), keyed by its Triton model name."""
    return {name: build_engine(preset, name) for name in served_engines(preset.config)}
