"""The manifest of an exported model repository: what was exported, from what, with which tensors.

It belongs to the serving runtime: the `vhs` orchestrator reads it at load (and refuses a repository
whose graph files do not hash to what it records); the exporter writes it in this format. The `vhs`
model's version folder holds `manifest.json` and the two tokenizers. Import-light: no torch, for the
Triton stub.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# 2: `device` (cpu | gpu) and each engine's `precision`; 3: `modes`, the served modes' table entries
FORMAT_VERSION = 3
# The version folder of the `vhs` model: <repository>/vhs/1/{manifest.json, tokenizer/, llm_tokenizer/}.
MANIFEST_FILE = "manifest.json"
TEXT_TOKENIZER_DIR = "tokenizer"
LLM_TOKENIZER_DIR = "llm_tokenizer"
REQUIRED_KEYS = (
    "format_version",
    "preset",
    "latent_shape",
    "image_shape",
    "backend",
    "device",
    "max_batch_size",
    "modes",
    "engines",
)
ENGINE_KEYS = ("inputs", "outputs", "file", "sha256", "precision")


class ManifestError(ValueError):
    """The manifest is missing, malformed, or does not match the files beside it."""


def load_manifest(path: str | Path) -> dict:
    """Read and check a manifest; raises ManifestError naming what is wrong."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"cannot read manifest {path}: {error}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"manifest {path} has format_version {manifest.get('format_version')!r}; this code reads "
            f"{FORMAT_VERSION}: re-export the model repository"
        )
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    missing += [
        f"engines.{name}.{key}"
        for name, e in manifest["engines"].items()
        for key in ENGINE_KEYS
        if key not in e
    ]
    if missing:
        raise ManifestError(f"manifest {path} lacks {', '.join(missing)}")
    return manifest


def artifact_files(path: str | Path) -> list[Path]:
    """The files of a graph/plan: the file itself, or every file under a directory-form graph, sorted."""
    path = Path(path)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a graph file; of a directory-form graph, of every file's relative name and bytes, so
    external data is covered too (a file's hash is unchanged by this rule)."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in artifact_files(path):
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def artifact_bytes(path: str | Path) -> int:
    return sum(file.stat().st_size for file in artifact_files(path))


def verify_engine_files(manifest: dict, repository: str | Path) -> None:
    """Check every engine's graph/plan in `repository/<engine>/1/` against the manifest's sha256.

    Raises ManifestError naming the engine, the file and both hashes: a graph re-exported without
    its orchestrator (or the reverse) would otherwise serve silently wrong tensor layouts.
    """
    for name, engine in manifest["engines"].items():
        path = Path(repository) / name / "1" / engine["file"]
        if not path.exists():
            raise ManifestError(f"engine '{name}': {path} is missing")
        actual = artifact_sha256(path)
        if actual != engine["sha256"]:
            raise ManifestError(
                f"engine '{name}': {path} has sha256 {actual[:16]}..., the manifest expects "
                f"{engine['sha256'][:16]}...: the repository mixes two exports"
            )
