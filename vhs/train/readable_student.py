"""A generator whose block l* carries the outcome: the shipped student fine-tuned to decide early.

The readability study found that block 7 of the shipped one-step student carries nothing a reader
can recover (a per-token map h7 -> z_0 never changes a verdict): this small generator decides in its
last blocks, where SANA-Sprint at scale decides by ~35 % depth. Here it is asked to. Starting from
the shipped student, on fresh noise and prompts of the verifiers' train groups:

    loss = pseudo_huber(student(noise), shipped(noise))              keep drawing what it drew
         + AUX_WEIGHT * mse(token_map(h_l*(noise)), shipped(noise))  and have it drawn by block l*

The shipped student is its own target (no teacher needed); `token_map` is the readability study's
per-token MLP, trained with the DiT, and dropped afterwards: the serving path never runs it.

Then, on the verifiers' validation prompts and seeds (never trained on here), the shipped and the
fine-tuned student side by side: the pass rate of their candidates (what Best-of-1 gets), how often
the two draw the same verdict, and the ceiling of block l* as `vhs.train.readability` reports it
(the token map's z_0, decoded by the shipped autoencoder and judged by the exact evaluator).

    python -m vhs.train.readable_student --block 7 --out build/train/readable_student/w1_s1000

writes the fine-tuned preset to <out>/preset (the shipped one with the new transformer), so that
`vhs.train.verifier_data --preset <out>/preset` draws the verifiers' data with it;
`--collect build/train/readable_student --out study_generator.json` gathers a study's runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..best_of_n import to_uint8_images
from ..engine_names import VAE_DECODER
from ..engines import build_engine
from ..noise import candidate_noise
from ..presets import load_preset, preset_folder
from ..shapes import evaluate, parse_prompt, prompt_text, sample_training_prompt
from .common import (
    DenoiserX0,
    LossLog,
    cosine_learning_rate,
    encode_prompts,
    load_checkpoint,
    save_checkpoint,
)
from .distill import pseudo_huber
from .verifier_data import split_prompts
from .verifier_metrics import selection_summary

# --- config ---------------------------------------------------------------------------------------
PRESET = "shapes"
SEED = 0
STEPS, BATCH_SIZE, LR, MIN_LR, WARMUP = 1000, 64, 1e-4, 1e-5, 50
AUX_WEIGHT = 1.0
MAP_WIDTH = 256  # as the readability study's token map
VALIDATION_PROMPTS, CANDIDATES = 800, 4  # the served Best-of-4 seeds of each validation prompt
LOG_INTERVAL, CHECKPOINT_INTERVAL = 25, 200
STUDY_DIR = Path("build/train/readable_student")
# ---------------------------------------------------------------------------------------------------


def one_step_student(preset, block: int) -> Callable:
    """The served single DiT step, split after `block`: (noise, prompt_embeds, attention_mask) ->
    (the hidden state after `block` (B, tokens, width), z_0 (B, C, h, w))."""
    denoiser = DenoiserX0(preset, block)

    def step(noise, prompt_embeds, attention_mask):
        timestep = torch.full((len(noise),), preset.config.max_timesteps)
        return denoiser.with_hidden_state(noise, timestep, prompt_embeds, attention_mask)

    return step


def token_map(width: int, latent_channels: int) -> nn.Module:
    """Hidden-state tokens (B, T, width) -> z_0 tokens (B, T, latent channels). The LayerNorm makes the
    map indifferent to the scale of the hidden state, which the fine-tuning may move."""
    return nn.Sequential(
        nn.LayerNorm(width, elementwise_affine=False),
        nn.Linear(width, MAP_WIDTH), nn.GELU(), nn.Linear(MAP_WIDTH, latent_channels),
    )  # fmt: skip


def as_tokens(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), the DiT's token order (patch size 1)."""
    return latents.flatten(2).transpose(1, 2)


def fine_tune(
    preset, shipped: Callable, block: int, out: Path, steps: int, aux_weight: float, map_only: bool
) -> nn.Module:
    """Train the student (preset.transformer) and the token map, resumably; returns the map. With
    `map_only` the student stays the shipped one: the map alone is the readability study's ceiling."""
    student = one_step_student(preset, block)
    config = preset.transformer.config
    head = token_map(config.num_attention_heads * config.attention_head_dim, config.out_channels)
    preset.transformer.train().requires_grad_(not map_only)
    parameters = [*head.parameters(), *([] if map_only else preset.transformer.parameters())]
    optimizer = torch.optim.AdamW(parameters, lr=LR, weight_decay=0.0)
    checkpoint, trained = out / "checkpoint.pt", {"transformer": preset.transformer, "token_map": head}
    start = load_checkpoint(checkpoint, trained, optimizer)
    log = LossLog(out)
    for step in tqdm(range(start, steps), initial=start, total=steps, desc="readable student"):
        rng = np.random.default_rng([SEED, step])
        prompts = [prompt_text(sample_training_prompt(rng, "train")) for _ in range(BATCH_SIZE)]
        prompt_embeds, mask = encode_prompts(preset, prompts)
        noise = torch.from_numpy(rng.standard_normal((BATCH_SIZE, *preset.latent_shape), dtype=np.float32))
        with torch.no_grad():
            target = shipped(noise, prompt_embeds, mask)[1]
        hidden, latents = student(noise, prompt_embeds, mask)
        keep = pseudo_huber(latents, target)
        aux = F.mse_loss(head(hidden), as_tokens(target))
        loss = aux if map_only else keep + aux_weight * aux
        lr = cosine_learning_rate(step, steps, LR, MIN_LR, WARMUP)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % LOG_INTERVAL == 0 or step + 1 == steps:
            log(step, keep=keep.item(), aux=aux.item(), lr=lr)
        if (step + 1) % CHECKPOINT_INTERVAL == 0 or step + 1 == steps:
            save_checkpoint(checkpoint, step + 1, trained, optimizer)
    preset.transformer.eval().requires_grad_(False)
    return head.eval()


@torch.no_grad()
def judge(preset, students: dict[str, tuple[Callable, nn.Module | None]]) -> dict:
    """On the validation prompts' first CANDIDATES seeds: each student's verdicts, and its token map's."""
    decoder = build_engine(load_preset(PRESET, components=("vae",)), VAE_DECODER)
    prompts = split_prompts("validation")[:VALIDATION_PROMPTS]
    verdicts = {name: {"passed": [], "ceiling": []} for name in students}
    for spec, seed in tqdm(prompts, desc="validation"):
        text = prompt_text(spec)
        prompt_embeds, mask = encode_prompts(preset, [text])
        noise = torch.from_numpy(candidate_noise(seed, list(range(CANDIDATES)), preset.latent_shape))
        prompt_embeds, mask = prompt_embeds.expand(CANDIDATES, -1, -1), mask.expand(CANDIDATES, -1)
        parsed = parse_prompt(text)
        for name, (student, head) in students.items():
            hidden, latents = student(noise, prompt_embeds, mask)
            decoded = {"passed": latents}
            if head is not None:
                decoded["ceiling"] = head(hidden).transpose(1, 2).reshape(latents.shape)
            for what, z in decoded.items():
                images = to_uint8_images(decoder(denoised_latents=z)["images"].numpy())
                verdicts[name][what] += [float(evaluate(image, parsed)) for image in images]
    tags = [spec.tag for spec, _ in prompts]
    prompt_index = np.repeat(np.arange(len(prompts)), CANDIDATES)
    result = {}
    for name, found in verdicts.items():
        passed = np.array(found["passed"])
        result[name] = {"pass_rate": float(passed.mean())}
        if found["ceiling"]:
            ceiling = np.array(found["ceiling"])
            result[name]["ceiling"] = selection_summary(ceiling, passed, prompt_index, tags, CANDIDATES)
            result[name]["ceiling"]["verdict_agreement"] = float((ceiling == passed).mean())
    first, second = (np.array(found["passed"]) for found in verdicts.values())
    difference = (second - first).reshape(len(prompts), CANDIDATES).mean(axis=1)
    result["pass_rate_difference"] = float(difference.mean())
    result["pass_rate_difference_se"] = float(difference.std(ddof=1) / np.sqrt(len(difference)))
    result["same_verdict"] = float((first == second).mean())
    return result


def collect(study: Path) -> dict:
    """One record of a `make generator-study` folder: the shipped generator's probe, and each run's
    result and loss log, with the probe and data cards of the candidates it drew (a map-only run
    draws none: its generator is the shipped one)."""
    record = {"shipped": {"readability": json.loads((study / "shipped_readability.json").read_text())}}
    for run in sorted(path.parent for path in study.glob("*/result.json")):
        result = json.loads((run / "result.json").read_text())
        record[run.name] = {
            **result,
            "loss_log": [json.loads(line) for line in (run / "loss_log.jsonl").read_text().splitlines()],
        }
        if not result["map_only"]:
            record[run.name]["readability"] = json.loads((run / "readability.json").read_text())
            record[run.name]["data_cards"] = {
                split: json.loads((run / "data" / split / "data_card.json").read_text())
                for split in ("train", "validation")
            }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collect", type=Path, metavar="STUDY", help="gather STUDY's runs into --out")
    parser.add_argument("--block", type=int, default=7, help="the block whose hidden state must carry z_0")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--aux-weight", type=float, default=AUX_WEIGHT)
    parser.add_argument("--map-only", action="store_true", help="train the token map alone (the baseline)")
    parser.add_argument("--out", type=Path, default=STUDY_DIR / f"w{AUX_WEIGHT:g}_s{STEPS}")
    args = parser.parse_args()
    if args.collect:
        args.out.write_text(json.dumps(collect(args.collect), indent=2) + "\n")
        return
    torch.manual_seed(SEED)
    preset = load_preset(PRESET, components=("text_encoder", "transformer"))
    shipped_preset = copy.deepcopy(preset)
    shipped_preset.transformer.requires_grad_(False)
    shipped = one_step_student(shipped_preset, args.block)
    head = fine_tune(preset, shipped, args.block, args.out, args.steps, args.aux_weight, args.map_only)
    if not args.map_only:  # a preset that draws with the fine-tuned student, for vhs.train.verifier_data
        shutil.copytree(preset_folder(PRESET), args.out / "preset", dirs_exist_ok=True)
        preset.transformer.save_pretrained(args.out / "preset" / "transformer")
    students = {"shipped": (shipped, None), "trained": (one_step_student(preset, args.block), head)}
    result = {
        "block": args.block, "steps": args.steps, "aux_weight": args.aux_weight, "map_only": args.map_only,
        "validation": judge(preset, students),
    }  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
