"""Checks of the folders a `preset.json` points at, made before and right after loading, so that a
wrong path, a missing component or two components of sizes that do not fit together is an error at
load naming the key or both components -- never a hub lookup of a typo or a bare tensor-size error
in the middle of a request.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..engine_names import DIT_PREFIX, DIT_SUFFIX
from ..modes import MODES
from ..preset_config import PresetConfigError

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
            _require_folders(folder, MODES[mode].folders, "verifier_path", f"the verifier of mode {mode!r}")
        return requested
    return tuple(mode for mode in MODES if all((folder / part).is_dir() for part in MODES[mode].folders))


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


DIT_WIDTH = "transformer width (num_attention_heads x attention_head_dim)"
# The width of what a generation stage hands a visual encoder, where one width describes it (the
# decoder's images are read by a vision tower with its own patching).
READ_WIDTHS = {DIT_PREFIX: DIT_WIDTH, DIT_SUFFIX: "transformer in_channels"}
GENERATOR_MATCHING_WIDTHS = [
    ("text_encoder hidden_size", "transformer caption_channels"),
    ("vae latent_channels", "transformer in_channels"),
]


def component_widths(preset) -> dict[str, int]:
    """The widths that components must agree on, of the components `preset` has loaded, each named
    by the config attribute it comes from."""
    widths = {}
    if preset.text_encoder is not None:
        widths["text_encoder hidden_size"] = preset.text_encoder.config.hidden_size
    if preset.transformer is not None:
        transformer = preset.transformer.config
        widths["transformer caption_channels"] = transformer.caption_channels
        widths["transformer in_channels"] = transformer.in_channels
        widths[DIT_WIDTH] = transformer.num_attention_heads * transformer.attention_head_dim
    if preset.vae is not None:
        widths["vae latent_channels"] = preset.vae.config.latent_channels
    for name, module in preset.verifier.items():
        config = getattr(module, "config", None)
        for attribute in ("hidden_size", "in_features", "out_features"):
            if config is not None and isinstance(getattr(config, attribute, None), int):
                widths[_width(name, attribute)] = getattr(config, attribute)
        if getattr(config, "prompt_width", 0):  # a connector that reads the text encoder's output
            widths[_width(name, "prompt_width")] = config.prompt_width
    return widths


def _width(part: str, attribute: str) -> str:
    # A connector's in/out features are named as the verifier's; a transformers model's hidden size plainly.
    return f"{part} {attribute}" if attribute == "hidden_size" else f"verifier {part} {attribute}"


def _output_widths(part: str) -> tuple[str, str]:
    """The names a part's output width may have: a connector's out_features or a model's hidden_size."""
    return _width(part, "out_features"), _width(part, "hidden_size")


def matching_widths() -> list[tuple[str, str]]:
    """Pairs of widths that must be equal for the components to fit together: the generator's, and
    along every verifier of the mode table, each part's input against what it reads (the stage, or
    the part before it), a prompt-reading part's prompt width against the text encoder's, and the
    last part's output against its LLM."""
    pairs = list(GENERATOR_MATCHING_WIDTHS)
    for mode in MODES.values():
        if not mode.verifies:
            continue
        reads = (READ_WIDTHS[mode.reads],) if mode.reads in READ_WIDTHS else ()
        for component in mode.encoder_components:
            pairs += [(_width(component.folder, "in_features"), width) for width in reads]
            pairs.append((_width(component.folder, "prompt_width"), "text_encoder hidden_size"))
            reads = _output_widths(component.folder)
        pairs += [(width, _width(mode.llm, "hidden_size")) for width in reads]
    return list(dict.fromkeys(pairs))


def check_component_sizes(widths: dict[str, int]) -> None:
    """Raise PresetConfigError when two known widths that must match do not (pairs with a side not
    loaded yet are checked when it is: the exporter accumulates widths over its loads)."""
    for left, right in matching_widths():
        if left in widths and right in widths and widths[left] != widths[right]:
            raise PresetConfigError(
                f"{left} is {widths[left]} but {right} is {widths[right]}: the components do not fit together"
            )
