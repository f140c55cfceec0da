"""Presets: configs + weights + tokenizers of every component, in diffusers/transformers folder layout.

A preset folder holds `preset.json` (the `PresetConfig` below) and two component folders:

    <generator>/  tokenizer/ text_encoder/ transformer/ vae/ scheduler/   (a SANA-Sprint diffusers folder)
    <verifier>/   tokenizer/ (shared by every verifier's LLM) and the parts of the modes it serves,
                  as the mode table names them (`VerifierMode.folders`): connector/ + llm/ (vhs),
                  clip_vision/ + clip_connector/ + clip_llm/ (clip), latent_connector/ + latent_llm/
                  (latent)

Every component is loaded with its own class's `from_pretrained`, so a published checkpoint and the
project's own weights go through exactly the same code. Presets differ only in data, never in code.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel, SCMScheduler
from transformers import AutoModel, AutoTokenizer

from ..modes import MODES, Component, verifier_components
from ..preset_config import PRESET_FILE, PresetConfig, PresetConfigError, parse_preset_json
from ..prompting import PromptTokenizer
from . import sana_sprint
from .folders import (
    check_component_sizes,
    check_generator_folder,
    component_widths,
    diffusers_complex_human_instruction,
    resolve_component_path,
    served_modes,
)

__all__ = [
    "Preset",
    "PresetConfig",
    "PresetConfigError",
    "PresetNotBuilt",
    "load_preset",
    "load_preset_config",
    "networks",
    "preset_folder",
]

BUILTIN_PRESETS = ("tiny-random", "shapes", "proportions")
CODE_PRESETS = ("tiny-random", "proportions")  # made by `vhs-build-preset`, never on load
# Folder name (also the Preset field) -> the class whose from_pretrained loads it.
GENERATOR_COMPONENTS = {
    "tokenizer": AutoTokenizer,
    "text_encoder": AutoModel,
    "transformer": SanaTransformer2DModel,
    "vae": AutoencoderDC,
    "scheduler": SCMScheduler,
}
GENERATOR_NETWORKS = ("text_encoder", "transformer", "vae")


def networks() -> tuple[str, ...]:
    """The components with weights, which `load_preset(components=...)` chooses among: the
    generator's and every verifier-folder part of the mode table (`vhs.modes.verifier_components`)."""
    return (*GENERATOR_NETWORKS, *verifier_components())


def component_class(component: Component) -> type:
    """The class named by a table entry's component, imported (diffusers' model_index.json rule)."""
    return getattr(importlib.import_module(component.library), component.class_name)


@dataclass
class Preset:
    """The components of a preset, loaded and in eval mode; None where not loaded (see `load_preset`).

    `verifier` holds the verifier folder's parts by folder name, as the mode table names them: each
    mode's visual-encoder components and its own LLM (each verifier fine-tunes its own, as in the
    paper). They read as attributes too: `preset.connector`, `preset.clip_llm` (None when absent).
    """

    config: PresetConfig
    tokenizer: object
    text_encoder: object | None
    transformer: SanaTransformer2DModel | None
    vae: AutoencoderDC | None
    scheduler: SCMScheduler
    llm_tokenizer: object
    verifier: dict[str, torch.nn.Module | None] = field(default_factory=dict)

    def __getattr__(self, name: str):
        # Only reached when ordinary lookup fails: the verifier parts, by the table's folder names.
        verifier = self.__dict__.get("verifier")
        if verifier is not None and name in verifier_components():
            return verifier.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def prompt_tokenizer(self) -> PromptTokenizer:
        return PromptTokenizer(
            self.tokenizer,
            self.llm_tokenizer,
            self.config.text_max_length,
            self.config.question_max_length,
            self.config.complex_human_instruction,
        )

    def modules(self) -> list[torch.nn.Module]:
        """Every loaded network (tokenizers and the scheduler excluded)."""
        return [module for name in networks() if (module := getattr(self, name)) is not None]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one candidate's noise / latent."""
        size = self.transformer.config.sample_size
        return (self.transformer.config.in_channels, size, size)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write this preset in the standard layout (generator in `folder`, verifier in `folder/verifier`)."""
        folder = Path(folder)
        config = PresetConfig(**{**asdict(self.config), "generator_path": ".", "verifier_path": "verifier"})
        for name in GENERATOR_COMPONENTS:
            getattr(self, name).save_pretrained(folder / name)
        verifier = folder / "verifier"
        self.llm_tokenizer.save_pretrained(verifier / "tokenizer")
        for name, module in self.verifier.items():
            if module is not None:
                module.save_pretrained(verifier / name)
        (folder / PRESET_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")


class PresetNotBuilt(PresetConfigError):
    """A preset made in code has not been built here; the message names the command that builds it."""


def preset_folder(name_or_path: str | os.PathLike) -> Path:
    """Resolve a built-in preset name or a folder path to a folder holding `preset.json`.

    `shapes` ships in the package. `tiny-random` and `proportions` are made in code by
    `vhs-build-preset` (vhs/presets/build.py); this only finds them, and raises PresetNotBuilt
    naming that command when they are not built. Nothing here builds or writes anything.
    """
    if name_or_path in CODE_PRESETS:
        from .build import built_folder

        folder = built_folder(str(name_or_path))
        if not (folder / PRESET_FILE).is_file():
            raise PresetNotBuilt(
                f"preset {name_or_path!r} is made in code and not built here: run `vhs-build-preset "
                f"{name_or_path}` (or `make preset PRESET={name_or_path}`), which writes {folder}"
            )
        return folder
    if name_or_path == "shapes":
        return Path(__file__).parent / "shapes"
    folder = Path(name_or_path)
    if not (folder / PRESET_FILE).is_file():
        raise ValueError(
            f"preset must be one of {', '.join(BUILTIN_PRESETS)} or a folder containing {PRESET_FILE}, "
            f"got {str(name_or_path)!r}"
        )
    return folder


def load_preset_config(name_or_path: str | os.PathLike) -> PresetConfig:
    """Read `preset.json` strictly and settle the served modes (see `vhs.presets.folders`).

    Raises PresetConfigError naming the key or folder that is wrong.
    """
    folder = preset_folder(name_or_path)
    path = folder / PRESET_FILE
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PresetConfigError(f"{path}: not valid JSON: {error}") from None
    config = parse_preset_json(data, str(path), diffusers_complex_human_instruction())
    verifier = resolve_component_path(folder, config.verifier_path, "verifier_path")
    return replace(config, modes=served_modes(verifier, config.modes if "modes" in data else None))


def load_preset(name_or_path: str | os.PathLike, components: Collection[str] | None = None) -> Preset:
    """Load the components of a preset with their own `from_pretrained`, in the preset's `torch_dtype`
    (as diffusers' `from_pretrained(torch_dtype=...)`); all modules in eval mode.

    components: the networks to load (`text_encoder`, `transformer`, `vae`, `llm` and the verifier
    parts); None loads all of them. The others are None, as are the verifier parts of modes the preset
    does not serve; tokenizers and the scheduler are always loaded. Widths of loaded components that
    do not fit together raise PresetConfigError naming both.
    """
    folder = preset_folder(name_or_path)
    config = load_preset_config(folder)
    generator = resolve_component_path(folder, config.generator_path, "generator_path")
    verifier = resolve_component_path(folder, config.verifier_path, "verifier_path")
    check_generator_folder(generator)
    if config.name == sana_sprint.NAME:  # the published architecture, or a refusal naming the field
        sana_sprint.check_published_architecture(generator)
    dtype = getattr(torch, config.torch_dtype)
    served = {name for mode in config.modes for name in MODES[mode].folders}
    loadable = {*GENERATOR_NETWORKS, *served}
    wanted = loadable if components is None else loadable & set(components)

    def load(cls, root: str, name: str):
        if name not in networks():  # tokenizer, scheduler: no weights, always loaded
            return cls.from_pretrained(root, subfolder=name)
        return cls.from_pretrained(root, subfolder=name, dtype=dtype) if name in wanted else None

    preset = Preset(
        config=config,
        llm_tokenizer=AutoTokenizer.from_pretrained(verifier, subfolder="tokenizer"),
        **{name: load(cls, generator, name) for name, cls in GENERATOR_COMPONENTS.items()},
        verifier={
            name: load(component_class(component), verifier, name)
            for name, component in verifier_components().items()
        },
    )
    check_component_sizes(component_widths(preset))
    for module in preset.modules():
        module.eval().requires_grad_(False)
    return preset
