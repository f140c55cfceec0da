"""Stage 4: write the `shapes` preset folder from the trained stages.

The verifier components (Qwen2 LLM, connectors, CLIP tower) and the tokenizers come from the seeded
untrained preset; the autoencoder, text encoder and one-step DiT from stages 1-3. The model card
(`README.md`) and the sample grid in the folder are left as they are.

    python -m vhs.train.assemble [--transformer build/train/student/transformer] [--out vhs/presets/shapes]
"""

import argparse
from pathlib import Path

from diffusers import AutoencoderDC, SanaTransformer2DModel
from transformers import AutoModel

from .common import TRAIN_DIR, untrained_preset

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "shapes"


def assemble(transformer_dir: Path, out_dir: Path) -> None:
    """Combine the untrained preset with the trained generator components and save it to `out_dir`."""
    preset = untrained_preset()
    preset.vae = AutoencoderDC.from_pretrained(TRAIN_DIR / "autoencoder" / "vae")
    preset.text_encoder = AutoModel.from_pretrained(TRAIN_DIR / "teacher" / "text_encoder")
    preset.transformer = SanaTransformer2DModel.from_pretrained(transformer_dir)
    preset.save_pretrained(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformer", type=Path, default=TRAIN_DIR / "student" / "transformer")
    parser.add_argument("--out", type=Path, default=PRESET_DIR)
    args = parser.parse_args()
    assemble(args.transformer, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
