"""Stage 2: the teacher, a TrigFlow flow-matching model: text encoder + DiT trained jointly.

Data: training prompts with a correct rendered scene, encoded by the stage-1 autoencoder (frozen).
For t ~ U(t_min, pi/2) and y_t = cos(t) y_0 + sin(t) noise, the DiT (called through the serving
split, `DenoiserX0`) estimates y_0; the loss is the TrigFlow velocity error
|v_hat - v|^2 = |y0_hat - y_0|^2 / sin(t)^2 (clipped weight), i.e. flow matching. The text
encoder is trained with the DiT (a random Gemma-2 does not tell "left of" from "right of"); 10 %
of the prompts are dropped to the empty prompt so the teacher can sample with classifier-free
guidance. The teacher is a many-step model; stage 3 distils it to one step.

    python -m vhs.train.teacher     (resumes from build/train/teacher/checkpoint.pt)
"""

import numpy as np
import torch
from diffusers import AutoencoderDC
from diffusers.training_utils import compute_density_for_timestep_sampling
from tqdm import tqdm

from .common import (
    TRAIN_DIR,
    DenoiserX0,
    LossLog,
    cosine_learning_rate,
    encode_images,
    load_checkpoint,
    save_checkpoint,
    tokenize_prompts,
    training_batch,
    untrained_preset,
)

# -----------------------------------------------------------------------------
out_dir = TRAIN_DIR / "teacher"
autoencoder_dir = TRAIN_DIR / "autoencoder" / "vae"
seed = 2
num_threads = 2  # both cores: nothing else runs meanwhile
# Cosine cycles with warm restarts (SGDR): (steps, peak learning rate, warmup steps); each restart
# continues at half the first peak. Samples improve at the end of each cycle while the loss stays
# flat: the model card (vhs/presets/shapes/README.md) has the score after every cycle.
cycles = ((3000, 1e-3, 200),) + 4 * ((1500, 5e-4, 50),)
max_steps = sum(steps for steps, _, _ in cycles)
batch_size = 64
min_learning_rate = 5e-5
prompt_dropout = 0.1  # fraction of empty prompts, for classifier-free guidance
# Times: "uniform" in t made the shipped weights. "logit_normal" is SD3's density on the
# rectified-flow sigma, tan(t) = sigma / (1 - sigma), shifted towards noise: more samples at t > 1,
# where layout, position and colour binding are decided (the model card compares the two).
time_sampling = "uniform"
logit_mean, logit_std = 0.4, 1.2
t_min = 0.02
max_loss_weight = 25.0  # clip of 1 / sin(t)^2 near t = 0
log_interval = 25
checkpoint_interval = 250
# -----------------------------------------------------------------------------


def sample_times(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(batch,) TrigFlow times in [t_min, pi/2], drawn as `time_sampling` says."""
    if time_sampling not in ("uniform", "logit_normal"):
        raise ValueError(f"time_sampling must be 'uniform' or 'logit_normal', got {time_sampling!r}")
    if time_sampling == "uniform":
        return t_min + (np.pi / 2 - t_min) * torch.rand(batch, generator=generator)
    sigma = compute_density_for_timestep_sampling(
        time_sampling, batch, logit_mean=logit_mean, logit_std=logit_std, generator=generator
    )
    return torch.atan2(sigma, 1 - sigma).clamp(t_min, np.pi / 2)


def flow_matching_loss(denoiser, text_encoder, tokenizer, max_length, prompts, y0, generator) -> torch.Tensor:
    """TrigFlow velocity MSE of one batch (prompts, clean latents y0 (B, C, h, w))."""
    input_ids, attention_mask = tokenize_prompts(tokenizer, prompts, max_length)
    prompt_embeds = text_encoder(input_ids, attention_mask=attention_mask).last_hidden_state
    batch = y0.shape[0]
    t = sample_times(batch, generator)
    noise = torch.randn(y0.shape, generator=generator)
    y_t = torch.cos(t).view(-1, 1, 1, 1) * y0 + torch.sin(t).view(-1, 1, 1, 1) * noise
    y0_hat = denoiser(y_t, t, prompt_embeds, attention_mask)
    weight = (1 / torch.sin(t) ** 2).clamp(max=max_loss_weight)
    return (weight * (y0_hat - y0).pow(2).mean(dim=(1, 2, 3))).mean()


def learning_rate(step: int) -> float:
    """The learning rate at `step`: cosine decay within each of the `cycles`."""
    start = 0
    for steps, peak, warmup_steps in cycles:
        if step < start + steps:
            return cosine_learning_rate(step - start, steps, peak, min_learning_rate, warmup_steps)
        start += steps
    raise ValueError(f"step {step} is past the last cycle ({max_steps} steps)")


def main() -> None:
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    preset = untrained_preset()
    vae = AutoencoderDC.from_pretrained(autoencoder_dir).eval().requires_grad_(False)
    text_encoder, transformer = preset.text_encoder.train(), preset.transformer.train()
    denoiser = DenoiserX0(preset)
    modules = {"text_encoder": text_encoder, "transformer": transformer}
    parameters = list(text_encoder.parameters()) + list(transformer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate(0), weight_decay=0.0)
    checkpoint = out_dir / "checkpoint.pt"
    step = load_checkpoint(checkpoint, modules, optimizer)
    log = LossLog(out_dir)
    progress = tqdm(range(step, max_steps), initial=step, total=max_steps, desc="teacher")
    for step in progress:
        # Data, dropout and noise are functions of (seed, step): a resumed run sees the same batches.
        rng = np.random.default_rng([seed, step])
        prompts, images = training_batch(rng, batch_size)
        prompts = ["" if rng.random() < prompt_dropout else prompt for prompt in prompts]
        with torch.no_grad():
            y0 = encode_images(vae, images)
        lr = learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        loss = flow_matching_loss(
            denoiser, text_encoder, preset.tokenizer, preset.config.text_max_length, prompts, y0, generator
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % log_interval == 0:
            log(step, loss=loss.item(), lr=lr)
            progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % checkpoint_interval == 0 or step + 1 == max_steps:
            save_checkpoint(checkpoint, step + 1, modules, optimizer)
            # The latest weights in diffusers/transformers layout, for stage 3 and for looking at.
            text_encoder.save_pretrained(out_dir / "text_encoder")
            transformer.save_pretrained(out_dir / "transformer")


if __name__ == "__main__":
    main()
