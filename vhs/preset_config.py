"""`preset.json`: the serving-relevant settings of a preset. Import-light (no torch), for the Triton stub."""

from __future__ import annotations

from dataclasses import dataclass

PRESET_FILE = "preset.json"


@dataclass(frozen=True)
class PresetConfig:
    """The serving-relevant settings of a preset (`preset.json`)."""

    name: str
    split_block: int  # l*: the verifier reads the output of this DiT block (0-based)
    guidance_scale: float  # SANA-Sprint's embedded guidance
    text_max_length: int  # prompt tokens the text encoder accepts (SANA-Sprint: 300)
    question_max_length: int  # verifier question tokens after <image> (prompt included)
    default_candidates: int
    max_candidates: int
    max_timesteps: float = 1.57080  # TrigFlow time of the single step (pi/2, SanaSprintPipeline's default)
    generator_path: str = "."  # relative to the preset folder, or an absolute path
    verifier_path: str = "verifier"

    def __post_init__(self):
        if not 1 <= self.default_candidates <= self.max_candidates:
            raise ValueError(
                f"default_candidates must be in [1, max_candidates={self.max_candidates}], "
                f"got {self.default_candidates}"
            )
