"""`preset.json`: the serving-relevant settings of a preset. Import-light (no torch), for the Triton stub.

`preset.json` is read strictly (`parse_preset_json`): an unknown key, a missing required key or a
value of the wrong type is an error naming the key, so a misspelt setting never falls back to a
default silently.
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, dataclass, fields

from .modes import MODES

PRESET_FILE = "preset.json"
TORCH_DTYPES = ("float32", "float16", "bfloat16")
# yes_no_softmax: P(yes) from the softmax over the yes/no logits (the paper's score);
# answer_token: the authors' released code's score (see vhs.verifier.AnswerTokenScorer).
SCORE_RULES = ("yes_no_softmax", "answer_token")


class PresetConfigError(ValueError):
    """`preset.json` (or the folders it points at) is not what this code can serve; names the key."""


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
    generator_path: str = "."  # relative to the preset folder, an absolute path, or "hub:<org>/<name>"
    verifier_path: str = "verifier"
    # Every component is loaded in this dtype, as diffusers' `from_pretrained(torch_dtype=...)` does;
    # float32 is what the ONNX export and the CPU engines need (a bf16 checkpoint is upcast exactly).
    torch_dtype: str = "float32"
    # Lines prepended to the prompt for the text encoder, as SanaSprintPipeline's argument of that
    # name; empty: the raw prompt. `true` in preset.json means diffusers' default instruction.
    complex_human_instruction: tuple[str, ...] = ()
    # The modes served. Absent from preset.json: every mode whose verifier folders exist.
    modes: tuple[str, ...] = tuple(MODES)
    score_rule: str = "yes_no_softmax"
    # Per-engine batch limits below max_candidates, {engine: rows} in preset.json (sana-sprint: the
    # DC-AE decoder at 1024 px, export/sizing.py); a larger call is split into chunks of that size.
    engine_max_batch: tuple[tuple[str, int], ...] = ()

    def max_batch(self, engine: str) -> int:
        """The largest batch `engine` is sent: its engine_max_batch entry, else max_candidates."""
        return min(dict(self.engine_max_batch).get(engine, self.max_candidates), self.max_candidates)

    def __post_init__(self):
        # JSON gives lists; the config is frozen and compared, so keep tuples.
        object.__setattr__(self, "complex_human_instruction", tuple(self.complex_human_instruction))
        object.__setattr__(self, "modes", tuple(self.modes))
        limits = self.engine_max_batch
        limits = limits.items() if isinstance(limits, dict) else limits
        object.__setattr__(self, "engine_max_batch", tuple(sorted((str(k), int(v)) for k, v in limits)))
        if any(rows < 1 for _, rows in self.engine_max_batch):
            raise PresetConfigError(
                f"engine_max_batch must hold batches >= 1, got {dict(self.engine_max_batch)}"
            )
        if not 1 <= self.default_candidates <= self.max_candidates:
            raise PresetConfigError(
                f"default_candidates must be in [1, max_candidates={self.max_candidates}], "
                f"got {self.default_candidates}"
            )
        if self.torch_dtype not in TORCH_DTYPES:
            raise PresetConfigError(
                f"torch_dtype must be one of {', '.join(TORCH_DTYPES)}, got {self.torch_dtype!r}"
            )
        if self.score_rule not in SCORE_RULES:
            raise PresetConfigError(
                f"score_rule must be one of {', '.join(SCORE_RULES)}, got {self.score_rule!r}"
            )
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown or "none" not in self.modes:  # Best-of-1 needs no verifier: always served
            raise PresetConfigError(
                f"modes must be a list of {', '.join(MODES)} that includes 'none', got {list(self.modes)}"
            )


_TYPES = {
    "name": str,
    "split_block": int,
    "guidance_scale": (int, float),
    "text_max_length": int,
    "question_max_length": int,
    "default_candidates": int,
    "max_candidates": int,
    "max_timesteps": (int, float),
    "generator_path": str,
    "verifier_path": str,
    "torch_dtype": str,
    "complex_human_instruction": (bool, list),
    "modes": list,
    "score_rule": str,
    "engine_max_batch": (dict, list),  # {engine: rows}; a list of [engine, rows] pairs as asdict writes it
}


def parse_preset_json(data: object, source: str, default_instruction: tuple[str, ...] = ()) -> PresetConfig:
    """The parsed content of a `preset.json` -> PresetConfig; raises PresetConfigError naming the key.

    `source` names the file in messages; `default_instruction` is what `"complex_human_instruction":
    true` stands for (diffusers' default, passed in by the caller so this module stays torch-free).
    """
    if not isinstance(data, dict):
        raise PresetConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    known = {field.name: field for field in fields(PresetConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(key, known, 1))
            else repr(key)
            for key in unknown
        ]
        raise PresetConfigError(f"{source}: unknown key {', '.join(hints)}; the keys are {', '.join(known)}")
    missing = [name for name, field in known.items() if field.default is MISSING and name not in data]
    if missing:
        raise PresetConfigError(f"{source}: missing required key {', '.join(map(repr, missing))}")
    for key, value in data.items():
        if (
            isinstance(value, bool)
            and key != "complex_human_instruction"
            or not isinstance(value, _TYPES[key])
        ):
            raise PresetConfigError(f"{source}: {key} has the wrong type ({type(value).__name__}): {value!r}")
    values = dict(data)
    instruction = values.get("complex_human_instruction", ())
    if instruction is True:
        values["complex_human_instruction"] = default_instruction
    elif instruction is False:
        values["complex_human_instruction"] = ()
    elif not all(isinstance(line, str) for line in instruction):
        raise PresetConfigError(
            f"{source}: complex_human_instruction must be true, false or a list of strings"
        )
    try:
        return PresetConfig(**values)
    except PresetConfigError as error:
        raise PresetConfigError(f"{source}: {error}") from None
