"""GenEval's folder layout for generated images, so they can be scored like GenEval's:

    <root>/00000/metadata.jsonl     one JSON line: the prompt's metadata (PromptSpec.to_metadata())
    <root>/00000/samples/0000.png   the images generated for that prompt
    <root>/00000/samples/0001.png
    <root>/00001/...

As in GenEval, entries of <root> whose names are not all digits are ignored.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vhs.shapes.prompts import PromptSpec


class LayoutError(ValueError):
    """A folder that does not follow GenEval's layout; the message names the path and what is wrong."""


@dataclass(frozen=True)
class PromptFolder:
    """One prompt's folder: its metadata as a spec, the prompt text it records, its images in name order."""

    path: Path
    spec: PromptSpec
    prompt: str
    sample_paths: tuple[Path, ...]


def write_prompt_folder(root: str | Path, index: int, spec: PromptSpec, images: Sequence[np.ndarray]) -> Path:
    """Write `<root>/<index:05d>/` with the prompt's metadata and `images` (uint8 (H, W, 3) each) as PNGs.

    Returns the prompt's folder.
    """
    folder = Path(root) / f"{index:05d}"
    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.jsonl").write_text(json.dumps(spec.to_metadata()) + "\n")
    for sample_index, image in enumerate(images):
        Image.fromarray(image).save(samples / f"{sample_index:04d}.png")
    return folder


def read_prompt_folders(root: str | Path) -> list[PromptFolder]:
    """All prompt folders under `root`, in name order; raises LayoutError on anything malformed."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder")
    prompt_paths = [path for path in sorted(root.iterdir()) if path.is_dir() and path.name.isdigit()]
    folders = [_read_prompt_folder(path) for path in prompt_paths]
    if not folders:
        raise LayoutError(
            f"{root}: no prompt folders; expected GenEval's layout <root>/00000/metadata.jsonl "
            f"and <root>/00000/samples/0000.png"
        )
    return folders


def _read_prompt_folder(folder: Path) -> PromptFolder:
    metadata_path = folder / "metadata.jsonl"
    if not metadata_path.is_file():
        raise LayoutError(f"{metadata_path}: missing")
    lines = [line for line in metadata_path.read_text().splitlines() if line.strip()]
    if not lines:
        raise LayoutError(f"{metadata_path}: empty; expected one JSON line of prompt metadata")
    try:
        metadata = json.loads(lines[0])
        spec = PromptSpec.from_metadata(metadata)
    except json.JSONDecodeError as error:
        raise LayoutError(f"{metadata_path}: not JSON ({error})") from error
    except ValueError as error:
        raise LayoutError(f"{metadata_path}: {error}") from error
    sample_paths = tuple(sorted((folder / "samples").glob("*.png")))
    if not sample_paths:
        raise LayoutError(f"{folder / 'samples'}: no .png images")
    return PromptFolder(folder, spec, str(metadata.get("prompt", "")), sample_paths)
