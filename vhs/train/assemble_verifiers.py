"""Write the trained verifiers into the `shapes` preset's verifier folder.

Each verifier trained by `vhs.train.verifier` (and, for CLIP, its frozen tower) replaces the seeded
components of its mode: the folder names are the mode table's (`VerifierMode.folders`, vhs/modes.py).

    python -m vhs.train.assemble_verifiers [--verifiers DIR] [--out vhs/presets/shapes/verifier]
"""

import argparse
import json
import shutil
from pathlib import Path

from .assemble import PRESET_DIR
from .verifier import OUT_DIR

# trained folder -> {its part: the preset's verifier folder}
SHIPPED = {
    "vhs_l7": {"connector": "connector", "llm": "llm"},
    "latent": {"connector": "latent_connector", "llm": "latent_llm"},
    "clip": {"clip_vision": "clip_vision", "connector": "clip_connector", "llm": "clip_llm"},
}


def assemble_verifiers(verifiers: Path, out: Path) -> list[str]:
    """Copy every part of every trained verifier in SHIPPED; returns the folders written."""
    written = []
    for trained, parts in SHIPPED.items():
        for part, target in parts.items():
            source = verifiers / trained / part
            if not source.is_dir():
                raise FileNotFoundError(f"{source} is missing: run make train-verifier first")
            shutil.rmtree(out / target, ignore_errors=True)
            shutil.copytree(source, out / target)
            _name_after(out / target / "config.json", source)
            written.append(target)
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
    parser.add_argument("--out", type=Path, default=PRESET_DIR / "verifier")
    args = parser.parse_args()
    print("wrote", ", ".join(str(args.out / name) for name in assemble_verifiers(args.verifiers, args.out)))


if __name__ == "__main__":
    main()
