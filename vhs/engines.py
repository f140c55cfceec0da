"""The engines: the exact `nn.Module`s that become ONNX graphs / TensorRT plans / Triton models.

The reference pipeline runs these same modules in PyTorch, the exporter traces them, and the
orchestrator calls their graphs by the names below, so the three cannot drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .dit_split import PREFIX_INPUTS, PREFIX_OUTPUTS, SUFFIX_INPUTS, SUFFIX_OUTPUTS, DiTPrefix, DiTSuffix
from .engine_names import DIT_PREFIX, DIT_SUFFIX, TEXT_ENCODER, VAE_DECODER
from .export_friendly import use_export_friendly_attention
from .modes import GENERATION_CHAIN, MODES, VerifierMode, all_engines, llm_engines, mode_of_encoder
from .preset_config import PresetConfig
from .presets import Preset
from .verifier import AnswerTokenScorer, YesNoScorer


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


# What a prompt-reading connector takes besides its visual input: the DiT prefix's prompt inputs.
PROMPT_INPUTS = ("prompt_embeds", "prompt_attention_mask")


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


def build_visual_encoder(preset: Preset, mode: VerifierMode) -> Engine:
    """The visual encoder of `mode`, as its table entry describes it: its components from the preset's
    verifier folder, given in order to its `encoder_class` (or the one component itself), mapping
    its `encoder_input` to `visual_tokens`; a connector that reads the prompt also takes the DiT's
    `prompt_embeds` and `prompt_attention_mask`, which every candidate's state already holds."""
    components = [getattr(preset, component.folder) for component in mode.encoder_components]
    if mode.encoder_class is None:
        (module,) = components
    else:
        library, class_name = mode.encoder_class
        module = getattr(importlib.import_module(library), class_name)(*components)
    reads_prompt = getattr(getattr(module, "connector", module), "reads_prompt", False)
    return Engine(module, (mode.encoder_input, *(PROMPT_INPUTS if reads_prompt else ())), ("visual_tokens",))


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


# The preset components each generation engine is built from (tokenizers and the scheduler are
# always loaded); a verifier's engines are built from the folders its table entry names.
GENERATION_COMPONENTS: dict[str, tuple[str, ...]] = {
    TEXT_ENCODER: ("text_encoder",),
    DIT_PREFIX: ("transformer",),
    DIT_SUFFIX: ("transformer",),
    VAE_DECODER: ("vae",),
}


def engine_components(name: str) -> tuple[str, ...]:
    """The preset components engine `name` is built from. The exporter loads one group of components
    at a time, so a 10 GB text encoder and a 6 GB DiT are never in memory together."""
    if name in GENERATION_COMPONENTS:
        return GENERATION_COMPONENTS[name]
    if name in llm_engines():
        return (name,)  # each verifier's own LLM, in the folder of that name
    return tuple(component.folder for component in mode_of_encoder(name).encoder_components)


def served_engines(config: PresetConfig) -> list[str]:
    """The engines of the modes a preset serves, in the order of the mode table's `all_engines()`:
    the text encoder, the generation chain, the served visual encoders and their LLMs."""
    served = [MODES[name] for name in config.modes if MODES[name].verifies]
    wanted = {TEXT_ENCODER, *GENERATION_CHAIN} | {m.visual_encoder for m in served} | {m.llm for m in served}
    return [name for name in all_engines() if name in wanted]


def build_engine(preset: Preset, name: str) -> Engine:
    """One engine from the components it needs (`engine_components`; the others may be None); eval mode.

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
            mode.visual_encoder: (lambda mode=mode: build_visual_encoder(preset, mode))
            for mode in MODES.values()
            if mode.verifies
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
