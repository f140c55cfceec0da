"""Checks of the folders a `preset.json` points at, made before and right after loading, so that a
wrong path, a missing component or two components of sizes that do not fit together is an error at
load naming the key or both components -- never a hub lookup of a typo or a bare tensor-size error
in the middle of a request.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..modes import MODES
from ..preset_config import PresetConfigError, verifier_folders

HUB_PREFIX = "hub:"
GENERATOR_FOLDERS = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")
VERIFIER_FOLDERS = ("tokenizer",)


def resolve_component_path(preset_folder: Path, path: str, key: str) -> str:
    """`generator_path`/`verifier_path` -> what `from_pretrained` gets.

    A path is relative to the preset folder (or absolute) and must exist; `hub:<org>/<name>` is a hub
    id, for machines that reach the hub (nothing here downloads otherwise).
    """
    if path.startswith(HUB_PREFIX):
        return path[len(HUB_PREFIX) :]
    local = (preset_folder / path).expanduser()
    if not local.is_dir():
        raise PresetConfigError(
            f"{key} {path!r} is not a folder (looked at {local}); give a folder relative to the preset "
            f"folder, an absolute path, or '{HUB_PREFIX}<org>/<name>' for a hub id"
        )
    return str(local)


def check_generator_folder(generator: str) -> None:
    """A local generator must be a SanaSprintPipeline folder (`save_pretrained` layout)."""
    _require_folders(Path(generator), GENERATOR_FOLDERS, "generator_path", "a SanaSprintPipeline folder")


def served_modes(verifier: str, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The modes a verifier folder can serve: those whose folders it holds (`requested`: the
    `modes` of preset.json, each of which must then be present). A hub verifier is taken at its word.
    """
    folder = Path(verifier)
    if not folder.is_dir():
        return requested or tuple(MODES)
    _require_folders(folder, VERIFIER_FOLDERS, "verifier_path", "a verifier folder")
    if requested is not None:
        for mode in requested:
            _require_folders(
                folder, verifier_folders(mode), "verifier_path", f"the verifier of mode {mode!r}"
            )
        return requested
    return tuple(mode for mode in MODES if all((folder / part).is_dir() for part in verifier_folders(mode)))


def _require_folders(folder: Path, names: tuple[str, ...], key: str, what: str) -> None:
    missing = [name for name in names if not (folder / name).is_dir()]
    if missing:
        raise PresetConfigError(
            f"{key} {folder} lacks {', '.join(f'{name}/' for name in missing)} ({what} holds "
            f"{', '.join(f'{name}/' for name in names)})"
        )


def diffusers_complex_human_instruction() -> tuple[str, ...]:
    """The instruction SanaSprintPipeline prepends by default, read from diffusers' own signature."""
    from diffusers import SanaSprintPipeline

    default = inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default
    return tuple(default)


def component_widths(preset) -> dict[str, int]:
    """The widths that components must agree on, of the components `preset` has loaded."""
    widths = {}
    if preset.text_encoder is not None:
        widths["text_encoder hidden_size"] = preset.text_encoder.config.hidden_size
    if preset.transformer is not None:
        transformer = preset.transformer.config
        widths["transformer caption_channels"] = transformer.caption_channels
        widths["transformer in_channels"] = transformer.in_channels
        widths["transformer width (num_attention_heads x attention_head_dim)"] = (
            transformer.num_attention_heads * transformer.attention_head_dim
        )
    if preset.vae is not None:
        widths["vae latent_channels"] = preset.vae.config.latent_channels
    for name in ("llm", "clip_llm", "latent_llm"):
        if (llm := getattr(preset, name)) is not None:
            widths[f"{name} hidden_size"] = llm.config.hidden_size
    if preset.clip_vision is not None:
        widths["clip_vision hidden_size"] = preset.clip_vision.config.hidden_size
    for name in ("connector", "clip_connector", "latent_connector"):
        if (connector := getattr(preset, name)) is not None:
            widths[f"verifier {name} in_features"] = connector.config.in_features
            widths[f"verifier {name} out_features"] = connector.config.out_features
    return widths


# Pairs of widths that must be equal for the components to fit together.
MATCHING_WIDTHS = [
    ("text_encoder hidden_size", "transformer caption_channels"),
    ("vae latent_channels", "transformer in_channels"),
    ("verifier connector in_features", "transformer width (num_attention_heads x attention_head_dim)"),
    ("verifier latent_connector in_features", "transformer in_channels"),
    ("verifier clip_connector in_features", "clip_vision hidden_size"),
    ("verifier connector out_features", "llm hidden_size"),
    ("verifier clip_connector out_features", "clip_llm hidden_size"),
    ("verifier latent_connector out_features", "latent_llm hidden_size"),
]


def check_component_sizes(widths: dict[str, int]) -> None:
    """Raise PresetConfigError when two known widths that must match do not (pairs with a side not
    loaded yet are checked when it is: the exporter accumulates widths over its loads)."""
    for left, right in MATCHING_WIDTHS:
        if left in widths and right in widths and widths[left] != widths[right]:
            raise PresetConfigError(
                f"{left} is {widths[left]} but {right} is {widths[right]}: the components do not fit together"
            )
