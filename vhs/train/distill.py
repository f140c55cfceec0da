"""Stage 3: distil the teacher to ONE DiT call per image, the way SANA-Sprint samples.

1. Teacher ODE pairs: for seeded training prompts and noise, the teacher's deterministic
   probability-flow ODE (`sample_ode`: DDIM steps in TrigFlow, classifier-free guidance) gives the
   clean latent that noise leads to. The pairs are written once to build/train/student/pairs-*.pt.
2. The student, initialised from the teacher's DiT, is regressed on the pairs at t = pi/2 through
   the serving split (`DenoiserX0`): exactly the call `SanaSprintPipeline(num_inference_steps=1)`
   makes. The loss is the pseudo-Huber distance of consistency training (iCT), not MSE. The text
   encoder is the teacher's, frozen, so the prompt embeddings are stored with the pairs.

    python -m vhs.train.distill     (resumes from build/train/student/checkpoint.pt)
"""

import copy
import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..shapes import prompt_text, sample_training_prompt
from .common import (
    TRAIN_DIR,
    DenoiserX0,
    LossLog,
    TeacherSampler,
    cosine_learning_rate,
    load_checkpoint,
    load_teacher,
    save_checkpoint,
)

# -----------------------------------------------------------------------------
out_dir = TRAIN_DIR / "student"
teacher_dir = TRAIN_DIR / "teacher"
seed = 3
num_threads = 2  # both cores: nothing else runs meanwhile
num_pairs = 8192
pair_batch_size = 256
teacher_steps = 16  # ODE steps per pair (32 give no better targets: see the model card)
cfg_scale = 2.5  # classifier-free guidance of the teacher, as `make eval-teacher` scores it
max_steps = 600
batch_size = 64
learning_rate = 2e-4
min_learning_rate = 2e-5
log_interval = 25
checkpoint_interval = 200
eval_pairs = 256  # the last pairs are held out from training, for the evaluation loss
# -----------------------------------------------------------------------------


@torch.no_grad()
def make_pairs(preset) -> dict[str, torch.Tensor]:
    """{noise, y0, prompt_embeds, attention_mask} of `num_pairs` teacher ODE solutions."""
    teacher = TeacherSampler(preset, teacher_steps, cfg_scale)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    pairs = {"noise": [], "y0": [], "prompt_embeds": [], "attention_mask": []}
    for _ in tqdm(range(0, num_pairs, pair_batch_size), desc="teacher ODE pairs"):
        prompts = [prompt_text(sample_training_prompt(rng)) for _ in range(pair_batch_size)]
        prompt_embeds, attention_mask = teacher.encode(prompts)
        noise = torch.randn((pair_batch_size, *preset.latent_shape), generator=generator)
        y0 = teacher(noise, prompt_embeds, attention_mask)
        for name, value in zip(pairs, (noise, y0, prompt_embeds, attention_mask), strict=True):
            pairs[name].append(value)
    return {name: torch.cat(values)[:num_pairs] for name, values in pairs.items()}


def pseudo_huber(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of sqrt(|d|^2 + c^2) - c per sample, d = prediction - target, with iCT's
    c = 0.00054 sqrt(dim) (Song & Dhariwal, 2023), divided by sqrt(dim) to read as an RMS error.

    Unlike MSE, a pair pulls in proportion to its error, not its square: the pairs the one-step
    student cannot fit dominate less (Best-of-1 0.354 against 0.343 with MSE, same pairs and steps)."""
    difference = (prediction - target).flatten(1)
    dim = difference.shape[1]
    c = 0.00054 * dim**0.5
    return (torch.sqrt(difference.pow(2).sum(dim=1) + c**2) - c).mean() / dim**0.5


def one_step(student: DenoiserX0, pairs: dict, rows: torch.Tensor) -> torch.Tensor:
    """The student's single step from the pairs' noise (t = pi/2): its y_0 estimate (B, C, h, w)."""
    t = torch.full((len(rows),), np.pi / 2)
    return student(pairs["noise"][rows], t, pairs["prompt_embeds"][rows], pairs["attention_mask"][rows])


def main() -> None:
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    preset = load_teacher(teacher_dir)

    # Named by what made them (teacher weights and settings), so a new teacher never reuses stale pairs.
    teacher_weights = teacher_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    teacher_id = hashlib.sha256(teacher_weights.read_bytes()).hexdigest()[:12]
    pairs_path = out_dir / f"pairs-{teacher_id}-{num_pairs}-steps{teacher_steps}-cfg{cfg_scale}.pt"
    if pairs_path.is_file():
        pairs = torch.load(pairs_path, weights_only=True)  # tensors only: nothing is unpickled
    else:
        pairs = make_pairs(preset)
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(pairs, pairs_path)

    # The student starts as a copy of the teacher's DiT.
    preset.transformer = copy.deepcopy(preset.transformer).train().requires_grad_(True)
    student = DenoiserX0(preset)
    optimizer = torch.optim.AdamW(preset.transformer.parameters(), lr=learning_rate, weight_decay=0.0)
    checkpoint = out_dir / "checkpoint.pt"
    step = load_checkpoint(checkpoint, {"transformer": preset.transformer}, optimizer)
    log = LossLog(out_dir)
    num_train = num_pairs - eval_pairs
    eval_rows = torch.arange(num_train, num_pairs)
    progress = tqdm(range(step, max_steps), initial=step, total=max_steps, desc="one-step student")
    for step in progress:
        rows = torch.from_numpy(
            np.random.default_rng([seed, step]).choice(num_train, batch_size, replace=False)
        )
        lr = cosine_learning_rate(step, max_steps, learning_rate, min_learning_rate)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = pseudo_huber(one_step(student, pairs, rows), pairs["y0"][rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(preset.transformer.parameters(), 1.0)
        optimizer.step()
        if step % log_interval == 0 or step + 1 == max_steps:
            with torch.no_grad():
                y0_hat = one_step(student, pairs, eval_rows)
                eval_loss = pseudo_huber(y0_hat, pairs["y0"][eval_rows]).item()
                eval_mse = F.mse_loss(y0_hat, pairs["y0"][eval_rows]).item()
            log(step, loss=loss.item(), eval_loss=eval_loss, eval_mse=eval_mse, lr=lr)
            progress.set_postfix(loss=f"{loss.item():.4f}", eval_loss=f"{eval_loss:.4f}")
        if (step + 1) % checkpoint_interval == 0 or step + 1 == max_steps:
            save_checkpoint(checkpoint, step + 1, {"transformer": preset.transformer}, optimizer)
    preset.transformer.save_pretrained(out_dir / "transformer")


if __name__ == "__main__":
    main()
