"""What every training stage shares: the training data, the untrained preset, checkpoints and logs."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..presets import Preset, load_preset
from ..presets.builder import save_once
from ..presets.shapes_builder import CONFIG, IMAGE_SIZE, SEED, SIZES, build_untrained_shapes
from ..shapes import prompt_text, render_scene, sample_training_prompt, scene_for_prompt

TRAIN_DIR = Path("build/train")
# Named after what it is built from, so that a change of sizes never reuses a stale build.
UNTRAINED_FINGERPRINT = hashlib.sha256(repr((CONFIG, SIZES, SEED)).encode()).hexdigest()[:8]
UNTRAINED_DIR = TRAIN_DIR / f"untrained-{UNTRAINED_FINGERPRINT}"


def training_batch(rng: np.random.Generator, batch_size: int) -> tuple[list[str], torch.Tensor]:
    """(prompts, images (B, 3, 64, 64) float in [-1, 1]): random training prompts and a correct scene
    for each, rendered on the fly. The evaluation prompts are never sampled."""
    prompts, images = [], []
    for _ in range(batch_size):
        spec = sample_training_prompt(rng)
        prompts.append(prompt_text(spec))
        images.append(render_scene(scene_for_prompt(spec, rng), IMAGE_SIZE))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return prompts, pixels / 127.5 - 1


def untrained_preset() -> Preset:
    """The seeded untrained preset, built once into UNTRAINED_DIR and loaded from there."""
    save_once(UNTRAINED_DIR, build_untrained_shapes)  # two training processes may ask at once
    preset = load_preset(UNTRAINED_DIR)
    for module in (preset.text_encoder, preset.transformer, preset.vae):
        module.requires_grad_(True)
    return preset


def save_checkpoint(path: Path, step: int, modules: dict, optimizer: torch.optim.Optimizer) -> None:
    """Everything needed to resume: step, module and optimizer states, the RNG states."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # never leave a half-written checkpoint


def load_checkpoint(path: Path, modules: dict, optimizer: torch.optim.Optimizer) -> int:
    """Restore a checkpoint written by `save_checkpoint` if it exists; returns the step to resume at."""
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)  # tensors and numbers only: nothing is unpickled
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"]


def cosine_learning_rate(
    step: int, max_steps: int, peak: float, floor: float, warmup_steps: int = 0
) -> float:
    """Linear warmup to `peak` over `warmup_steps`, then cosine decay to `floor` at `max_steps`
    (nanoGPT's schedule: a function of the step alone, so a resumed run needs no scheduler state)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


class LossLog:
    """Appends one JSON line per logged step to `<folder>/loss_log.jsonl` (step, losses, elapsed s)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "loss_log.jsonl"
        self.start = time.time()

    def __call__(self, step: int, **values: float) -> None:
        record = {"step": step, **{k: round(float(v), 6) for k, v in values.items()}}
        record["elapsed_s"] = round(time.time() - self.start, 1)
        with self.path.open("a") as log:
            log.write(json.dumps(record) + "\n")


def tokenize_prompts(tokenizer, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) (B, max_length), tokenized and right-padded exactly as
    `vhs.prompting.PromptTokenizer` does for serving (lower-cased, stripped, BOS first); an empty
    prompt (the unconditional one of classifier-free guidance) is BOS alone. A prompt longer than
    `max_length` tokens is an error, as serving rejects it: training on a truncated prompt would
    teach an image the server can never be asked for."""
    input_ids = torch.full((len(prompts), max_length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), max_length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids = tokenizer(prompt.lower().strip(), add_special_tokens=True).input_ids
        if len(ids) > max_length:
            raise ValueError(
                f"prompt {prompt!r} is {len(ids)} text-encoder tokens long; the limit is {max_length}"
            )
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


@torch.no_grad()
def encode_prompts(preset: Preset, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (prompt_embeds (B, S, width), attention_mask (B, S)) from the preset's text encoder."""
    input_ids, mask = tokenize_prompts(preset.tokenizer, prompts, preset.config.text_max_length)
    return preset.text_encoder(input_ids, attention_mask=mask).last_hidden_state, mask


def encode_images(vae, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> clean latents in the DiT's units (`scaling_factor` applied: std ~ 1)."""
    return vae.encode(images).latent * vae.config.scaling_factor


class DenoiserX0:
    """The DiT called exactly as SANA-Sprint's single-step sampling calls it, at any TrigFlow time.

    `DiTSuffix(DiTPrefix(y_t, t), y_t, t)` with y_t = cos(t) y_0 + sin(t) noise (latents divided by
    sigma_data) returns the TrigFlow estimate of y_0, `cos(t) y_t - sin(t) v`: at t = pi/2 it is the
    served one-step generator, at other t it is the flow-matching denoiser. Training through the
    serving modules is what guarantees the preset works unchanged in the split and the pipeline.
    """

    def __init__(self, preset: Preset, split_block: int | None = None):
        from ..dit_split import DiTPrefix, DiTSuffix

        split_block = preset.config.split_block if split_block is None else split_block
        sigma_data = preset.scheduler.config.sigma_data
        self.prefix = DiTPrefix(preset.transformer, split_block, sigma_data)
        self.suffix = DiTSuffix(preset.transformer, split_block, sigma_data)
        self.guidance_scale = preset.config.guidance_scale

    def __call__(self, y_t, t, prompt_embeds, attention_mask) -> torch.Tensor:
        """y_t (B, C, h, w), t (B,) TrigFlow time in (0, pi/2] -> y_0 estimate (B, C, h, w)."""
        return self.with_hidden_state(y_t, t, prompt_embeds, attention_mask)[1]

    def with_hidden_state(self, y_t, t, prompt_embeds, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """As `__call__`, also returning the hidden state after the split block (B, tokens, width)."""
        guidance = torch.full_like(t, self.guidance_scale)
        prefix = self.prefix(y_t, prompt_embeds, attention_mask, t, guidance)
        return prefix[0], self.suffix(*prefix, y_t, t)


def load_teacher(teacher_dir: Path) -> Preset:
    """The untrained preset with the trained teacher's text encoder and DiT, frozen, in eval mode."""
    from diffusers import SanaTransformer2DModel
    from transformers import AutoModel

    preset = untrained_preset()
    preset.text_encoder = AutoModel.from_pretrained(teacher_dir / "text_encoder").eval().requires_grad_(False)
    preset.transformer = SanaTransformer2DModel.from_pretrained(teacher_dir / "transformer").eval()
    preset.transformer.requires_grad_(False)
    return preset


class TeacherSampler:
    """The many-step teacher as a sampler: prompts + noise -> the clean latent its ODE leads to.

    Shared by distillation (the teacher ODE pairs) and `evaluate_teacher`, so the student learns
    exactly what the teacher is scored on.
    """

    def __init__(self, preset: Preset, num_steps: int, cfg_scale: float):
        self.preset = preset
        self.denoiser = DenoiserX0(preset)
        self.num_steps = num_steps
        self.cfg_scale = cfg_scale
        self.empty_embeds, self.empty_mask = self.encode([""])

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (prompt_embeds (B, S, width), attention_mask (B, S)) from the teacher's encoder."""
        return encode_prompts(self.preset, prompts)

    def __call__(self, noise: torch.Tensor, prompt_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """noise (B, C, h, w) at t = pi/2 -> y_0 (B, C, h, w) after `num_steps` guided ODE steps."""
        return sample_ode(
            self.denoiser,
            noise,
            prompt_embeds,
            mask,
            self.empty_embeds,
            self.empty_mask,
            self.num_steps,
            self.cfg_scale,
        )


@torch.no_grad()
def sample_ode(
    denoiser: DenoiserX0,
    noise: torch.Tensor,
    prompt_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    empty_embeds: torch.Tensor,
    empty_mask: torch.Tensor,
    num_steps: int,
    cfg_scale: float,
) -> torch.Tensor:
    """The teacher's probability-flow ODE from noise (t = pi/2) to y_0 (t = 0): deterministic DDIM
    steps in TrigFlow, with classifier-free guidance against the empty prompt. Returns y_0 (B, C, h, w)."""
    times = torch.linspace(np.pi / 2, 0, num_steps + 1)
    y_t = noise
    batch = noise.shape[0]
    for t, s in zip(times[:-1], times[1:], strict=True):
        t_batch = torch.full((batch,), float(t))
        y0 = denoiser(y_t, t_batch, prompt_embeds, attention_mask)
        if cfg_scale != 1.0:
            y0_empty = denoiser(
                y_t, t_batch, empty_embeds.expand(batch, -1, -1), empty_mask.expand(batch, -1)
            )
            y0 = y0_empty + cfg_scale * (y0 - y0_empty)
        noise_estimate = (y_t - torch.cos(t) * y0) / torch.sin(t)
        y_t = torch.cos(s) * y0 + torch.sin(s) * noise_estimate
    return y_t
