"""Score the many-step teacher on the fixed evaluation prompts, to decide how long it trains.

Entry i of `evaluation_prompts()` starts from the noise of the served candidate 0 for seed i, runs
the teacher's probability-flow ODE (`sample_ode`, classifier-free guidance) and is decoded and
judged by the shapes evaluator, exactly as `evaluate_generator` judges the one-step student.

    python -m vhs.train.evaluate_teacher [--teacher build/train/teacher] [--steps 16] [--cfg-scale 2.5]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderDC
from tqdm import tqdm

from ..best_of_n import to_uint8_images
from ..engines import VAEDecoder
from ..noise import candidate_noise
from ..shapes import TASKS, evaluate, evaluation_prompts, prompt_text
from .common import TRAIN_DIR, TeacherSampler, load_teacher
from .evaluate_generator import format_scores, task_scores

BATCH_SIZE = 128


@torch.no_grad()
def score_teacher(teacher_dir: Path, autoencoder_dir: Path, num_steps: int, cfg_scale: float) -> dict:
    """{"teacher_ode": {task: score, ..., "overall": mean}} over the 553 evaluation entries."""
    preset = load_teacher(teacher_dir)
    teacher = TeacherSampler(preset, num_steps, cfg_scale)
    decoder = VAEDecoder(AutoencoderDC.from_pretrained(autoencoder_dir).eval())
    entries = list(enumerate(evaluation_prompts()))
    passed = {tag: [] for tag in TASKS}
    for start in tqdm(range(0, len(entries), BATCH_SIZE), desc="teacher ODE"):
        batch = entries[start : start + BATCH_SIZE]
        embeds, mask = teacher.encode([prompt_text(spec) for _, spec in batch])
        # candidate 0's noise of seed i, as the served path and `evaluate_generator` draw it
        noise = torch.from_numpy(
            np.concatenate([candidate_noise(seed, [0], preset.latent_shape) for seed, _ in batch])
        )
        y0 = teacher(noise, embeds, mask)
        for (_, spec), image in zip(batch, to_uint8_images(decoder(y0).numpy()), strict=True):
            passed[spec.tag].append(evaluate(image, spec))
    return {"teacher_ode": task_scores(passed), "images": len(entries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=TRAIN_DIR / "teacher")
    parser.add_argument("--autoencoder", type=Path, default=TRAIN_DIR / "autoencoder" / "vae")
    parser.add_argument("--steps", type=int, default=16, help="ODE steps")
    parser.add_argument("--cfg-scale", type=float, default=2.5, help="classifier-free guidance scale")
    args = parser.parse_args()
    torch.set_num_threads(2)
    scores = score_teacher(args.teacher, args.autoencoder, args.steps, args.cfg_scale)
    print(f"{scores['images']} evaluation entries, {args.teacher}: {args.steps} steps, cfg {args.cfg_scale}")
    print(format_scores(scores))


if __name__ == "__main__":
    main()
