"""How much of a candidate's outcome each representation carries: the verifier study's diagnostics.

Before training verifiers at scale, measure on the validation split, for the DiT hidden state after
each stored block, z_0 and the pixels:

    ceiling   (a) a per-token map h_l -> z_0 (an MLP on each token, trained with MSE on the train
              split), whose output is decoded by the shipped autoencoder and judged by the exact
              shapes evaluator. The verdict on that decoded guess, used as the score, is what a
              reader that recovers the final latent from h_l could approach. z_0 and the pixels
              need no map (their ceiling is the oracle).
    probe     (b) a small non-LLM reader: a per-token MLP on [features, token position, the
              prompt's attributes], max- and mean-pooled to one score, trained with the pairwise
              within-prompt loss on batches of whole prompts.
    conv probe (`--conv-probe`) a stronger reader, served by nothing: a convolutional network over
              the token grid (or the pixels) whose every block is scaled and shifted by the
              prompt's attributes (FiLM), trained with the same loss. It sees neighbouring tokens
              and asks the prompt at every layer, so it bounds from below what a reader of any
              size could recover; a representation it cannot rank is hard to read, not badly read.

Each reports the within-prompt AUROC of the first 4 candidates (with its bootstrap standard error
over prompts) and of all of them (overall and per task), and Best-of-4 minus Best-of-1 on
validation (with its paired standard error). These numbers say whether block l* of this generator
can carry the product's claim, whatever LLM reads it.

    python -m vhs.train.readability --out build/train/readability.json
    python -m vhs.train.readability --representations hidden_states_l19 --train-prompts 1600 --no-ceiling
    python -m vhs.train.readability --representations images --no-ceiling --conv-probe
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..best_of_n import to_uint8_images
from ..engine_names import VAE_DECODER
from ..engines import build_engine
from ..presets import load_preset
from ..shapes import COLORS, SHAPES, TASKS, evaluate, parse_prompt
from ..shapes.prompts import COUNTING_NUMBERS, RELATIONS
from .verifier import ranking_loss
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import READ_BLOCKS, load_split
from .verifier_metrics import by_task, mixed, selection_summary, within_prompt_auroc

# --- config ---------------------------------------------------------------------------------------
SEED = 0
REPRESENTATIONS = (*(f"hidden_states_l{b}" for b in READ_BLOCKS), "denoised_latents", "images")
PROBE_WIDTH, PROBE_STEPS, PROBE_LR, PROBE_BATCH_PROMPTS = 128, 1500, 1e-3, 16
MAP_WIDTH, MAP_STEPS, MAP_LR, MAP_BATCH = 256, 1500, 1e-3, 256
CONV_STEPS, CONV_LR, CONV_BATCH_PROMPTS = 3000, 2e-3, 8
PATCH = 8  # pixels become (64 / PATCH)^2 tokens of PATCH x PATCH x 3 values
# ---------------------------------------------------------------------------------------------------


def as_tokens(features: np.ndarray) -> torch.Tensor:
    """Stored features -> (N, tokens, channels) float: hidden states as they are, latents one token per
    latent pixel, images one token per PATCH x PATCH patch."""
    if features.dtype == np.uint8:
        n, height, width, _ = features.shape
        patches = features.reshape(n, height // PATCH, PATCH, width // PATCH, PATCH, 3).swapaxes(2, 3)
        return torch.from_numpy(patches.reshape(n, -1, PATCH * PATCH * 3)).float() / 255
    if features.ndim == 4:
        return torch.from_numpy(features).float().flatten(2).transpose(1, 2)
    return torch.from_numpy(features).float()


def per_prompt_of(arrays: dict[str, np.ndarray]) -> int:
    """Candidates per prompt of a split (every prompt has as many, in order)."""
    return int(np.bincount(arrays["prompt_index"])[0])


def prompt_attributes(text: str) -> np.ndarray:
    """A fixed-length description of a prompt: its task, and for each of two objects its shape, colour
    and count, and the relation between them (one-hot blocks, zeros where absent)."""
    spec = parse_prompt(text)
    blocks = [np.eye(len(TASKS))[TASKS.index(spec.tag)]]
    for index in range(2):
        shape, color, count = np.zeros(len(SHAPES)), np.zeros(len(COLORS)), np.zeros(len(COUNTING_NUMBERS))
        if index < len(spec.include):
            clause = spec.include[index]
            shape[SHAPES.index(clause.shape)] = 1
            if clause.color is not None:
                color[list(COLORS).index(clause.color)] = 1
            if clause.count in COUNTING_NUMBERS:
                count[COUNTING_NUMBERS.index(clause.count)] = 1
        blocks += [shape, color, count]
    relation = np.zeros(len(RELATIONS))
    for clause in spec.include:
        if clause.position is not None:
            relation[RELATIONS.index(clause.position[0])] = 1
    return np.concatenate([*blocks, relation]).astype(np.float32)


class Probe(nn.Module):
    """(tokens (B, T, C), attributes (B, A)) -> score (B,): a per-token MLP on [normalised token,
    learned position, attributes], max- and mean-pooled, then a linear score."""

    def __init__(self, tokens: torch.Tensor, num_attributes: int):
        super().__init__()
        self.register_buffer("mean", tokens.mean(dim=(0, 1)))
        self.register_buffer("std", tokens.std(dim=(0, 1)) + 1e-3)
        self.position = nn.Parameter(torch.zeros(tokens.shape[1], PROBE_WIDTH))
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens.shape[2] + num_attributes, PROBE_WIDTH), nn.GELU(),
            nn.Linear(PROBE_WIDTH, PROBE_WIDTH), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Linear(2 * PROBE_WIDTH, 1)

    def forward(self, tokens, attributes):
        tokens = (tokens - self.mean) / self.std
        attributes = attributes[:, None, :].expand(-1, tokens.shape[1], -1)
        hidden = self.token_mlp(torch.cat([tokens, attributes], dim=-1)) + self.position
        return self.head(torch.cat([hidden.amax(dim=1), hidden.mean(dim=1)], dim=-1)).squeeze(-1)


def train_probe(tokens, attributes, passed, per_prompt: int) -> Probe:
    """The probe trained with the pairwise within-prompt loss on batches of whole prompts."""
    torch.manual_seed(SEED)
    probe = Probe(tokens[:: max(1, len(tokens) // 4096)], attributes.shape[1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=PROBE_LR, weight_decay=1e-4)
    rng = np.random.default_rng(SEED)
    num_prompts = len(tokens) // per_prompt
    for _ in tqdm(range(PROBE_STEPS), desc="probe", leave=False):
        prompts = rng.integers(num_prompts, size=PROBE_BATCH_PROMPTS)
        rows = (prompts[:, None] * per_prompt + np.arange(per_prompt)).ravel()
        scores = probe(tokens[rows], attributes[rows]).view(len(prompts), per_prompt)
        loss = ranking_loss(scores, passed[rows].view(len(prompts), per_prompt), "pairwise")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return probe.eval()


class FiLMBlock(nn.Module):
    """Two 3x3 convolutions; the second's normalised output scaled and shifted by the attributes."""

    def __init__(self, in_channels: int, out_channels: int, num_attributes: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(num_attributes, 2 * out_channels)
        self.norm = nn.GroupNorm(8, out_channels)

    def forward(self, x, attributes):
        scale, shift = self.film(attributes)[..., None, None].chunk(2, dim=1)
        return F.gelu(self.norm(self.conv_2(F.gelu(self.conv_1(x)))) * (1 + scale) + shift)


class ConvProbe(nn.Module):
    """(grid (B, C, H, W), attributes (B, A)) -> score (B,): three FiLM blocks over the 8 x 8 token
    grid (after a 1x1 widening), or over the pixels (a strided 4x4 stem to 32 x 32, then pooled to
    8 x 8 between blocks); max- and mean-pooled with the attributes into a two-layer head."""

    def __init__(self, grid: torch.Tensor, num_attributes: int):
        super().__init__()
        channels, side = grid.shape[1], grid.shape[2]
        self.pixels = side > 8
        if self.pixels:  # centred, as stored
            self.register_buffer("mean", torch.full((1, channels, 1, 1), 0.5))
            self.register_buffer("std", torch.ones(1, channels, 1, 1))
        else:
            self.register_buffer("mean", grid.mean(dim=(0, 2, 3), keepdim=True))
            self.register_buffer("std", grid.std(dim=(0, 2, 3), keepdim=True) + 1e-3)
        self.stem, widths = (
            (nn.Conv2d(channels, 32, 4, stride=2, padding=1), (32, 32, 64, 128))
            if self.pixels
            else (nn.Conv2d(channels, 64, 1), (64, 96, 128, 128))
        )
        self.blocks = nn.ModuleList(FiLMBlock(a, b, num_attributes) for a, b in itertools.pairwise(widths))
        self.head = nn.Sequential(
            nn.Linear(2 * widths[-1] + num_attributes, 128), nn.GELU(), nn.Linear(128, 1)
        )

    def forward(self, grid, attributes):
        x = F.gelu(self.stem((grid - self.mean) / self.std))
        for i, block in enumerate(self.blocks):
            x = block(x, attributes)
            if self.pixels and i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)  # 32 -> 16 -> 8
        pooled = torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3)), attributes], dim=-1)
        return self.head(pooled).squeeze(-1)


def as_grid(features: np.ndarray) -> torch.Tensor:
    """Stored features -> (N, C, H, W) float: images as pixels in [0, 1], hidden states as their
    square token grid, latents as they are."""
    if features.dtype == np.uint8:
        return torch.from_numpy(features).permute(0, 3, 1, 2).float() / 255
    tokens = as_tokens(features)
    side = math.isqrt(tokens.shape[1])
    return tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)


def train_conv_probe(features: np.ndarray, attributes, passed, per_prompt: int) -> ConvProbe:
    """The conv probe trained with the pairwise within-prompt loss on batches of whole mixed prompts
    (the only ones the loss reads), the learning rate on a cosine to 0. The stored features are
    made a grid one batch at a time (the train split's pixels as floats would not fit in memory)."""
    torch.manual_seed(SEED)
    probe = ConvProbe(as_grid(features[::50]), attributes.shape[1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=CONV_LR, weight_decay=1e-4)
    rng = np.random.default_rng(SEED)
    verdicts = passed.view(-1, per_prompt)
    mixed_prompts = np.flatnonzero(mixed(verdicts.bool().numpy()))
    for step in tqdm(range(1, CONV_STEPS + 1), desc="conv probe", leave=False):
        for group in optimizer.param_groups:
            group["lr"] = CONV_LR * 0.5 * (1 + np.cos(np.pi * step / CONV_STEPS))
        prompts = rng.choice(mixed_prompts, CONV_BATCH_PROMPTS)
        rows = (prompts[:, None] * per_prompt + np.arange(per_prompt)).ravel()
        scores = probe(as_grid(features[rows]), attributes[rows]).view(len(prompts), per_prompt)
        loss = ranking_loss(scores, verdicts[prompts], "pairwise")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return probe.eval()


def train_token_map(tokens: torch.Tensor, latents: torch.Tensor) -> nn.Module:
    """A per-token MLP from a representation's tokens (N, T, C) to z_0's tokens (N, T, latent
    channels), trained with MSE."""
    torch.manual_seed(SEED)
    mean, std = tokens.mean(dim=(0, 1)), tokens.std(dim=(0, 1)) + 1e-3
    token_map = nn.Sequential(
        nn.Linear(tokens.shape[2], MAP_WIDTH), nn.GELU(), nn.Linear(MAP_WIDTH, latents.shape[2])
    )
    optimizer = torch.optim.AdamW(token_map.parameters(), lr=MAP_LR)
    rng = np.random.default_rng(SEED)
    for _ in tqdm(range(MAP_STEPS), desc="token map", leave=False):
        rows = rng.integers(len(tokens), size=MAP_BATCH)
        loss = F.mse_loss(token_map((tokens[rows] - mean) / std), latents[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return lambda x: token_map((x - mean) / std)


def in_chunks(function, *tensors: torch.Tensor, size: int = 1024) -> torch.Tensor:
    """`function` applied to consecutive row chunks of `tensors`, without gradients, concatenated."""
    with torch.no_grad():
        chunks = [function(*(t[i : i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)]
    return torch.cat(chunks)


def judged_decodings(predicted: torch.Tensor, latent_shape, prompts: list[str], prompt_index) -> np.ndarray:
    """The shapes evaluator's verdict (N,) on the autoencoder's decoding of predicted z_0 tokens
    (N, h*w, C); prompt_index (N,) indexes `prompts`."""
    decoder = build_engine(load_preset("shapes"), VAE_DECODER)
    latents = predicted.transpose(1, 2).reshape(-1, *latent_shape)
    images = to_uint8_images(in_chunks(lambda z: decoder(denoised_latents=z)["images"], latents).numpy())
    specs = [parse_prompt(text) for text in prompts]
    return np.array([evaluate(image, specs[p]) for image, p in zip(images, prompt_index, strict=True)], float)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--representations", nargs="+", default=REPRESENTATIONS)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--train-prompts", type=int, help="train on the first prompts only (data scaling)")
    parser.add_argument("--no-ceiling", action="store_true", help="probe only (judging is slow)")
    parser.add_argument("--conv-probe", action="store_true", help="also the conv probe (~20-45 min each)")
    parser.add_argument("--out", type=Path, default=Path("build/train/readability.json"))
    args = parser.parse_args()
    keys = ("passed", "prompt_index", "denoised_latents")
    train, train_record = load_split("train", keys, args.data_dir)
    train_rows = (
        slice(None) if args.train_prompts is None else slice(0, args.train_prompts * per_prompt_of(train))
    )
    train = {key: value[train_rows] for key, value in train.items()}
    validation, validation_record = load_split("validation", keys, args.data_dir)
    per_prompt = per_prompt_of(train)
    latent_shape = train["denoised_latents"].shape[1:]
    validation_tags = [p["tag"] for p in validation_record["prompts"]]
    prompts = [p["text"] for p in validation_record["prompts"]]

    def attributes_of(arrays, record):
        table = np.stack([prompt_attributes(p["text"]) for p in record["prompts"]])
        return torch.from_numpy(table[arrays["prompt_index"]])

    train_attributes, validation_attributes = (
        attributes_of(train, train_record),
        attributes_of(validation, validation_record),
    )
    train_latents = as_tokens(train["denoised_latents"])
    passed = torch.from_numpy(train["passed"])

    def summarise(scores: np.ndarray) -> dict:
        return {
            **selection_summary(scores, validation["passed"], validation["prompt_index"], validation_tags),
            "within_prompt_auroc_all": within_prompt_auroc(
                scores, validation["passed"], validation["prompt_index"]
            ),
            "within_prompt_auroc_all_by_task": by_task(scores, validation, validation_tags),
        }

    result = {}
    for name in args.representations:
        train_features = load_split("train", (name,), args.data_dir)[0][name][train_rows]
        validation_features = load_split("validation", (name,), args.data_dir)[0][name]
        train_tokens, validation_tokens = as_tokens(train_features), as_tokens(validation_features)
        probe = train_probe(train_tokens, train_attributes, passed, per_prompt)
        scores = in_chunks(probe, validation_tokens, validation_attributes).numpy()
        result[name] = {"train_candidates": len(train_tokens), "probe": summarise(scores)}
        if args.conv_probe:
            conv_probe = train_conv_probe(train_features, train_attributes, passed, per_prompt)
            scores = in_chunks(conv_probe, as_grid(validation_features), validation_attributes).numpy()
            result[name]["conv_probe"] = summarise(scores)
        if name.startswith("hidden_states_l") and not args.no_ceiling:
            predicted = in_chunks(train_token_map(train_tokens, train_latents), validation_tokens)
            verdicts = judged_decodings(predicted, latent_shape, prompts, validation["prompt_index"])
            result[name]["ceiling"] = summarise(verdicts)
            result[name]["ceiling"]["verdict_agreement"] = float((verdicts == validation["passed"]).mean())
        print(name, json.dumps(result[name]), flush=True)
        # Written after each representation: the whole study takes hours on 2 cores.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
