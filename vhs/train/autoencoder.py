"""Stage 1: train the DC-AE (64 x 64 x 3 <-> 8 x 8 x 8) on rendered scenes of training prompts.

Two phases:
1. steps [0, encoder_steps): encoder and decoder together. Loss: L1 + MSE of the reconstruction,
   plus a small L2 pull on the latents so their scale stays bounded. The decoder sees slightly
   noised latents, so it tolerates the small errors of the one-step generator's latents.
   Then the encoder is frozen: the latent space is final, `scaling_factor` is set to 1 / std of
   the latents (the DC-AE convention: unit-variance diffusion latents) and the autoencoder is
   saved, so stage 2 can start.
2. steps [encoder_steps, max_steps): the decoder alone, same loss. Stage 2 trains on the frozen
   encoder's latents meanwhile (it may run in parallel from step encoder_steps on).

    python -m vhs.train.autoencoder     (resumes from build/train/autoencoder/checkpoint.pt)
"""

import numpy as np
import torch
from tqdm import tqdm

from .common import (
    TRAIN_DIR,
    LossLog,
    cosine_learning_rate,
    load_checkpoint,
    save_checkpoint,
    training_batch,
    untrained_preset,
)

# -----------------------------------------------------------------------------
out_dir = TRAIN_DIR / "autoencoder"
seed = 1
num_threads = 1  # the 2 cores are shared: a second thread on a busy core spin-waits, 3x slower
encoder_steps = 1000  # then the encoder is frozen and only the decoder trains
max_steps = 1850
batch_size = 32
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 50
latent_l2_weight = 1e-4
latent_noise_std = 0.05  # relative to the latent std: robustness of the decoder
log_interval = 25
checkpoint_interval = 100
eval_batches = 4
# -----------------------------------------------------------------------------


def reconstruction_losses(vae, images, noise_std: float) -> tuple[torch.Tensor, ...]:
    """(total loss, L1, latents) of a batch of images in [-1, 1]."""
    latents = vae.encode(images).latent
    noisy = latents + noise_std * latents.detach().std() * torch.randn_like(latents)
    reconstruction = vae.decode(noisy).sample
    error = reconstruction - images
    loss = (error.abs() + error.pow(2)).mean() + latent_l2_weight * latents.pow(2).mean()
    return loss, error.abs().mean(), latents


@torch.no_grad()
def evaluate_and_save(vae, log: LossLog, step: int) -> None:
    """L1 on fresh batches (seed + 1000: never trained on); sets scaling_factor; saves the autoencoder."""
    vae.eval()
    l1_values, latent_batches = [], []
    for index in range(eval_batches):
        _, images = training_batch(np.random.default_rng([seed + 1000, index]), batch_size)
        _, l1, latents = reconstruction_losses(vae, images, 0.0)
        l1_values.append(l1.item())
        latent_batches.append(latents)
    latent_std = torch.cat(latent_batches).std().item()
    vae.register_to_config(scaling_factor=1.0 / latent_std)
    log(step, eval_l1=float(np.mean(l1_values)), latent_std=latent_std)
    print(f"step {step}: eval L1 {np.mean(l1_values):.4f} (pixels in [-1, 1]); latent std {latent_std:.4f}")
    vae.save_pretrained(out_dir / "vae")
    vae.train()


def main() -> None:
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    vae = untrained_preset().vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    checkpoint = out_dir / "checkpoint.pt"
    step = load_checkpoint(checkpoint, {"vae": vae}, optimizer)
    log = LossLog(out_dir)
    if step >= encoder_steps:
        evaluate_and_save(vae, log, step)  # the frozen encoder's latents, for stage 2
    progress = tqdm(range(step, max_steps), initial=step, total=max_steps, desc="autoencoder")
    for step in progress:
        if step == encoder_steps:
            evaluate_and_save(vae, log, step)
        # The data stream is a function of (seed, step), so a resumed run sees the batches it would have.
        _, images = training_batch(np.random.default_rng([seed, step]), batch_size)
        decoder_only = step >= encoder_steps
        vae.encoder.requires_grad_(not decoder_only)
        lr = cosine_learning_rate(step, max_steps, learning_rate, min_learning_rate, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, l1, _ = reconstruction_losses(vae, images, latent_noise_std)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        if step % log_interval == 0:
            log(step, loss=loss.item(), l1=l1.item(), lr=lr)
            progress.set_postfix(loss=f"{loss.item():.4f}", l1=f"{l1.item():.4f}")
        if (step + 1) % checkpoint_interval == 0 or step + 1 == max_steps:
            save_checkpoint(checkpoint, step + 1, {"vae": vae}, optimizer)
    # The encoder is unchanged since phase 1, so the scaling factor is the same; the decoder is new.
    evaluate_and_save(vae, log, max_steps)


if __name__ == "__main__":
    main()
