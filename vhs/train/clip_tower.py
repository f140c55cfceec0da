"""The CLIP baseline's vision tower: contrastive pre-training on images and captions of the world.

The MLLM-with-CLIP verifier is trained as LLaVA is: a CLIP vision tower pre-trained on its own,
then frozen. Here the tower (the preset's `CLIPVisionModel` config) learns with a small CLIP text
tower, on two kinds of pairs: the generated candidates of the verifiers' train split with the
caption of what each shows (`caption_image`), and freshly rendered scenes with theirs. Its quality is
reported as zero-shot caption retrieval on the validation split's candidates (never trained on):
the share of images whose own caption scores highest among CAPTIONS_PER_RETRIEVAL captions.

    python -m vhs.train.clip_tower --out build/train/verifiers/clip_tower
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

from ..presets import load_preset
from ..shapes import render_scene, sample_training_scene
from ..verifier import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from .common import LossLog, cosine_learning_rate
from .verifier import as_model_input, pad_token_ids, starting_verifier
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import load_split

# --- config ---------------------------------------------------------------------------------------
PRESET = "shapes"
SEED = 0
STEPS, LR, BATCH_SIZE = 600, 1e-3, 128
RENDERED_SHARE = 0.5  # of each batch: rendered scenes; the rest generated candidates
CAPTIONS_PER_RETRIEVAL = 100
OUT_DIR = Path("build/train/verifiers/clip_tower")
# ---------------------------------------------------------------------------------------------------


def caption_retrieval(model: CLIPModel, images: np.ndarray, caption_ids, caption_mask) -> float:
    """Top-1 accuracy of picking each image's caption among CAPTIONS_PER_RETRIEVAL consecutive ones."""
    hits, total = 0, 0
    with torch.no_grad():
        for start in range(0, len(images) - CAPTIONS_PER_RETRIEVAL + 1, CAPTIONS_PER_RETRIEVAL):
            rows = slice(start, start + CAPTIONS_PER_RETRIEVAL)
            logits = model(
                input_ids=caption_ids[rows], attention_mask=caption_mask[rows],
                pixel_values=normalise(as_model_input(images[rows])),
            ).logits_per_image  # fmt: skip
            hits += int((logits.argmax(dim=1) == torch.arange(logits.shape[0])).sum())
            total += logits.shape[0]
    return hits / total


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """CLIP's mean/std normalisation, as `ClipVisualEncoder` applies it before the tower."""
    return (pixels - torch.tensor(CLIP_IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_IMAGE_STD).view(
        1, 3, 1, 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    preset = load_preset(PRESET)
    start = starting_verifier(preset).clip_vision  # the seeded tower, not the one the preset ships
    tokenizer = preset.llm_tokenizer
    vision = start.config
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
        projection_dim=vision.projection_dim, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict()))
    model.vision_model.load_state_dict(start.state_dict())

    train, train_record = load_split("train", ("images",), args.data_dir)
    validation, validation_record = load_split("validation", ("images",), args.data_dir)
    train_captions = pad_token_ids(tokenizer, train_record["captions"])
    validation_captions = pad_token_ids(tokenizer, validation_record["captions"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    log = LossLog(args.out)
    rendered = int(BATCH_SIZE * RENDERED_SHARE)
    for step in range(STEPS):
        rng = np.random.default_rng([SEED, step])
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(step, STEPS, LR, LR / 10, warmup_steps=STEPS // 20)
        rows = rng.integers(len(train["images"]), size=BATCH_SIZE - rendered)
        scenes = [sample_training_scene(rng) for _ in range(rendered)]
        images = np.concatenate([train["images"][rows], np.stack([render_scene(s) for s, _ in scenes])])
        ids, mask = pad_token_ids(
            tokenizer, [train_record["captions"][r] for r in rows] + [c for _, c in scenes]
        )
        loss = model(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=normalise(as_model_input(images)),
            return_loss=True,
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == STEPS - 1:
            log(step, loss=loss.item())
    model.eval()
    retrieval = {
        "train": caption_retrieval(model, train["images"][:1000], *(t[:1000] for t in train_captions)),
        "validation": caption_retrieval(model, validation["images"], *validation_captions),
    }
    start.load_state_dict(model.vision_model.state_dict())
    start.save_pretrained(args.out / "clip_vision")
    (args.out / "metrics.json").write_text(json.dumps({"caption_retrieval_top1": retrieval}, indent=2) + "\n")
    print(json.dumps(retrieval, indent=2))


if __name__ == "__main__":
    main()
