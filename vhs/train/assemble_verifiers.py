"""Write the trained verifiers into the `shapes` preset's verifier folder, with what stands behind them.

Each verifier trained by `vhs.train.verifier` (and, for CLIP, its frozen tower) replaces the seeded
components of its mode: the folder names are the mode table's (`VerifierMode.folders`, vhs/modes.py).
Beside the weights, in `training/`: each verifier's metrics.json (its recipe, validation metrics and
training time), the CLIP tower's, the data card of every split, and the study the choices were made
on (`make verifier-study`: study.json/.md, block_choice.md, scaling_*.json; later studies as
study_<what>.json/.md) where they were run.

    python -m vhs.train.assemble_verifiers [--verifiers DIR] [--data DIR] [--out vhs/presets/shapes/verifier]
"""

import argparse
import json
import shutil
from pathlib import Path

from .assemble import PRESET_DIR
from .verifier import OUT_DIR
from .verifier_data import OUT_DIR as DATA_DIR


def shipped(split_block: int) -> dict[str, dict[str, str]]:
    """trained folder -> {its part: the preset's verifier folder}; VHS reads the preset's l*."""
    return {
        f"vhs_l{split_block}": {"connector": "connector", "llm": "llm"},
        "latent": {"connector": "latent_connector", "llm": "latent_llm"},
        "clip": {"clip_vision": "clip_vision", "connector": "clip_connector", "llm": "clip_llm"},
    }


def preset_split_block(preset_dir: Path = PRESET_DIR) -> int:
    """The `shapes` preset's l* (its preset.json), without loading the preset."""
    return int(json.loads((preset_dir / "preset.json").read_text())["split_block"])


def assemble_verifiers(verifiers: Path, out: Path) -> list[str]:
    """Copy every part of every shipped verifier (`shipped`); returns the folders written."""
    written = []
    for trained, parts in shipped(preset_split_block()).items():
        for part, target in parts.items():
            source = verifiers / trained / part
            if not source.is_dir():
                raise FileNotFoundError(f"{source} is missing: run make train-verifier first")
            shutil.rmtree(out / target, ignore_errors=True)
            shutil.copytree(source, out / target)
            _name_after(out / target / "config.json", source)
            written.append(target)
    return written


def ship_training_records(verifiers: Path, data: Path, out: Path) -> list[str]:
    """Copy each shipped verifier's metrics.json, the CLIP tower's and every split's data card into
    `out/training/`; returns the files written."""
    records = {
        f"{trained}_metrics.json": verifiers / trained / "metrics.json"
        for trained in shipped(preset_split_block())
    }
    records["clip_tower_metrics.json"] = verifiers / "clip_tower" / "metrics.json"
    # The studies the choices were made on (make verifier-study: study.*, block_choice.md, scaling_*;
    # later ones as study_<what>.*), where they were run.
    records["block_choice.md"] = verifiers / "block_choice.md"
    for pattern in ("study*.json", "study*.md", "scaling_*.json"):
        records |= {path.name: path for path in sorted(verifiers.glob(pattern))}
    records |= {f"data_card_{split.name}.json": split / "data_card.json" for split in sorted(data.iterdir())}
    shutil.rmtree(out / "training", ignore_errors=True)  # no record of a verifier no longer shipped
    (out / "training").mkdir(parents=True)
    written = []
    for name, source in records.items():
        if source.is_file():
            shutil.copyfile(source, out / "training" / name)
            written.append(f"training/{name}")
    return written


def _name_after(config_path: Path, source: Path) -> None:
    """Record where a shipped component was trained (diffusers writes the folder it was loaded from,
    an absolute path of the training machine, into `_name_or_path`)."""
    config = json.loads(config_path.read_text())
    if "_name_or_path" in config:
        config["_name_or_path"] = str(source)
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifiers", type=Path, default=OUT_DIR)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=PRESET_DIR / "verifier")
    args = parser.parse_args()
    written = assemble_verifiers(args.verifiers, args.out) + ship_training_records(
        args.verifiers, args.data, args.out
    )
    print("wrote", ", ".join(str(args.out / name) for name in written))


if __name__ == "__main__":
    main()
