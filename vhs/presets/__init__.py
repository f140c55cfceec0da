"""Presets: configs + weights + tokenizers of every component, in diffusers/transformers folder layout.

A preset folder holds `preset.json` (the `PresetConfig` below) and two component folders:

    <generator>/  tokenizer/ text_encoder/ transformer/ vae/ scheduler/   (a SANA-Sprint diffusers folder)
    <verifier>/   tokenizer/ llm/ clip_llm/ latent_llm/ connector/ clip_vision/ clip_connector/
                  latent_connector/

Every component is loaded with its own class's `from_pretrained`, so a published checkpoint and the
project's own weights go through exactly the same code. Presets differ only in data, never in code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from diffusers import AutoencoderDC, SanaTransformer2DModel, SCMScheduler
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel

from ..preset_config import PRESET_FILE, PresetConfig
from ..prompting import PromptTokenizer
from ..verifier import MLPConnector

BUILTIN_PRESETS = ("tiny-random", "shapes")
# Folder name (also the Preset field) -> the class whose from_pretrained loads it.
GENERATOR_COMPONENTS = {
    "tokenizer": AutoTokenizer,
    "text_encoder": AutoModel,
    "transformer": SanaTransformer2DModel,
    "vae": AutoencoderDC,
    "scheduler": SCMScheduler,
}
# The verifier folder: each mode's LLM (vhs/modes.py names its engine, which is also its folder),
# their shared tokenizer (`llm_tokenizer` field, `tokenizer/` folder), and the visual encoders'
# weights of every mode a preset serves.
VERIFIER_COMPONENTS = {
    "llm": AutoModelForCausalLM,
    "clip_llm": AutoModelForCausalLM,
    "latent_llm": AutoModelForCausalLM,
    "connector": MLPConnector,
    "clip_vision": CLIPVisionModel,
    "clip_connector": MLPConnector,
    "latent_connector": MLPConnector,
}


@dataclass
class Preset:
    """All components of a preset, loaded and in eval mode."""

    config: PresetConfig
    tokenizer: object
    text_encoder: object
    transformer: SanaTransformer2DModel
    vae: AutoencoderDC
    scheduler: SCMScheduler
    llm_tokenizer: object
    llm: object  # each verifier fine-tunes its own LLM, as in the paper: VHS's
    clip_llm: object  # the CLIP baseline's
    latent_llm: object  # the AE-latent baseline's
    connector: MLPConnector
    clip_vision: CLIPVisionModel
    clip_connector: MLPConnector
    latent_connector: MLPConnector

    @property
    def prompt_tokenizer(self) -> PromptTokenizer:
        return PromptTokenizer(
            self.tokenizer, self.llm_tokenizer, self.config.text_max_length, self.config.question_max_length
        )

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
        for name in VERIFIER_COMPONENTS:
            getattr(self, name).save_pretrained(verifier / name)
        (folder / PRESET_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")


def preset_folder(name_or_path: str | os.PathLike) -> Path:
    """Resolve a built-in preset name or a folder path to a folder holding `preset.json`.

    `tiny-random` is built in code on first use (into `$VHS_CACHE_DIR`, default `./build/presets`);
    `shapes` ships in the package.
    """
    if name_or_path == "tiny-random":
        from .tiny_random import ensure_tiny_random

        return ensure_tiny_random()
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
    data = json.loads((preset_folder(name_or_path) / PRESET_FILE).read_text())
    known = {f.name for f in fields(PresetConfig)}
    return PresetConfig(**{key: value for key, value in data.items() if key in known})


def load_preset(name_or_path: str | os.PathLike) -> Preset:
    """Load every component of a preset with its own `from_pretrained`; all modules in eval mode."""
    folder = preset_folder(name_or_path)
    config = load_preset_config(folder)
    generator = _resolve(folder, config.generator_path)
    verifier = _resolve(folder, config.verifier_path)
    preset = Preset(
        config=config,
        llm_tokenizer=AutoTokenizer.from_pretrained(verifier, subfolder="tokenizer"),
        **{
            name: cls.from_pretrained(generator, subfolder=name) for name, cls in GENERATOR_COMPONENTS.items()
        },
        **{name: cls.from_pretrained(verifier, subfolder=name) for name, cls in VERIFIER_COMPONENTS.items()},
    )
    for name in (*GENERATOR_COMPONENTS, *VERIFIER_COMPONENTS):
        module = getattr(preset, name)
        if hasattr(module, "eval"):  # tokenizers and the scheduler hold no weights
            module.eval().requires_grad_(False)
    return preset


def _resolve(folder: Path, path: str) -> str:
    """A path relative to the preset folder if it exists there, else as given (absolute path or hub id)."""
    local = folder / path
    return str(local) if local.exists() else path
