"""The `sana-sprint` preset: `preset.json` settings for a SANA-Sprint checkpoint and a verifier folder.

The published generator is `Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers` (a diffusers
`SanaSprintPipeline` folder: 20 blocks, width 2240, Gemma-2 text encoder, 1024 x 1024 px from a
32 x 32 latent); the published VHS verifier reads the output of block 7. The values below are
SanaSprintPipeline's own defaults (one step at TrigFlow time pi/2, guidance 4.5, 300 prompt tokens).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ..preset_config import PRESET_FILE, PresetConfig

NAME = "sana-sprint"
SPLIT_BLOCK = 7
GUIDANCE_SCALE = 4.5
TEXT_MAX_LENGTH = 300
# Qwen2 tokens of the question after <image>: ~30 of template and question, the rest for the prompt.
QUESTION_MAX_LENGTH = 160
DEFAULT_CANDIDATES = 4
MAX_CANDIDATES = 16


def sana_sprint_config(generator_path: str, verifier_path: str, **overrides) -> PresetConfig:
    """The PresetConfig of a SANA-Sprint preset; `overrides` replace any other field."""
    settings = {
        "name": NAME,
        "split_block": SPLIT_BLOCK,
        "guidance_scale": GUIDANCE_SCALE,
        "text_max_length": TEXT_MAX_LENGTH,
        "question_max_length": QUESTION_MAX_LENGTH,
        "default_candidates": DEFAULT_CANDIDATES,
        "max_candidates": MAX_CANDIDATES,
        "generator_path": generator_path,
        "verifier_path": verifier_path,
        **overrides,
    }
    return PresetConfig(**settings)


def write_preset_json(folder: str | os.PathLike, config: PresetConfig) -> Path:
    """Write `folder/preset.json` (without `modes`: the verifier folder's contents decide them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in asdict(config).items() if key != "modes"}
    path = folder / PRESET_FILE
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path
