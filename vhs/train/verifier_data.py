"""Verifier stage 0, the dataset: candidates of the shipped generator, labelled by the shapes evaluator.

For the prompts of one split, CANDIDATES[split] candidates each, generated exactly as the served path
does (candidate i of a prompt is the noise of (seed, i)):

    train, validation   `sample_training_prompt(rng, split)`: disjoint prompt groups, never an
                        evaluation prompt; validation chooses every hyperparameter and checkpoint
    evaluation          the 553 evaluation prompts, entry i with seed i (as `make eval-generator`),
                        12 candidates (Best-of-N up to 12): touched once, for the final tables

Every candidate keeps what each verifier reads:

    hidden_states_l{b}  (tokens, width) fp16   the DiT hidden state after block b, b in READ_BLOCKS
                                               (VHS; block indexing as the preset's split_block)
    denoised_latents    (C, h, w) fp16         z_0, the autoencoder latent (the AE-latent verifier)
    images              (H, W, 3) uint8        the decoded candidate (the CLIP verifier)
    passed              uint8                  the shapes evaluator's verdict on the image for the prompt
    object_map          (h * w,) uint8         which object has its centre in each cell of the latent's
                                               grid, the readers' token grid (`vhs.shapes.object_map`)
    prompt_index        int32                  the prompt's row in the shard's JSON

and, in the shard's JSON, each prompt (text, task, seed) and each candidate's caption from its
pixels (`caption_image`: what the candidate actually shows, for the alignment stage). Shards are
written whole or not at all, so a run resumes where it stopped. Storing beats recomputing here:
one epoch reads in seconds, while generating the candidates takes minutes.

    python -m vhs.train.verifier_data --split train
    python -m vhs.train.verifier_data --split validation
    python -m vhs.train.verifier_data --split train --relabel    # after the evaluator changed
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from ..best_of_n import BestOfN, to_uint8_images
from ..engine_names import DIT_PREFIX, DIT_SUFFIX, TEXT_ENCODER, VAE_DECODER
from ..engines import build_engines
from ..presets import load_preset
from ..shapes import (
    TASKS,
    PromptSpec,
    caption_objects,
    check_objects,
    detect_objects,
    evaluation_prompts,
    object_map,
    parse_prompt,
    prompt_text,
    sample_training_prompt,
)
from .verifier_metrics import mixed

# --- config ---------------------------------------------------------------------------------------
PRESET = "shapes"
READ_BLOCKS = (1, 5, 7, 9, 19)  # the paper's layer study (h1 .. h19 of a 20-block DiT)
# Candidates per prompt (the paper uses 20): 16, so that most prompts hold both passing and failing
# candidates, which is all a within-prompt ranking loss learns from. 6,400 training prompts x 16 =
# 102,400 candidates (the paper: 118K); 800 validation prompts x 16 choose every hyperparameter.
CANDIDATES = {"train": 16, "validation": 16, "evaluation": 16}
PROMPTS = {"train": 6400, "validation": 800}
SPLIT_SEEDS = {"train": 0, "validation": 1}
SHARD_PROMPTS = 100
BATCH_PROMPTS = 8  # prompts per forward pass (x CANDIDATES candidates)
OUT_DIR = Path("build/train/verifier_data")
# ---------------------------------------------------------------------------------------------------


def split_prompts(split: str) -> list[tuple[PromptSpec, int]]:
    """(prompt, noise seed) of every prompt of a split, in order; seeds distinct across splits."""
    if split == "evaluation":
        return [(spec, index) for index, spec in enumerate(evaluation_prompts())]
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    first_seed = 1_000_000 * (SPLIT_SEEDS[split] + 1)
    return [(sample_training_prompt(rng, split), first_seed + index) for index in range(PROMPTS[split])]


class CandidateGenerator:
    """The shipped generator, split after its last block so that every block's output is reachable:
    `__call__(prompts, seeds)` returns each candidate's hidden states at READ_BLOCKS, z_0 and image."""

    def __init__(self, preset_name: str = PRESET, read_blocks: tuple[int, ...] = READ_BLOCKS):
        preset = load_preset(preset_name)
        last_block = len(preset.transformer.transformer_blocks) - 1
        preset.config = dataclasses.replace(preset.config, split_block=last_block)
        self.engines = build_engines(preset)
        self.tokenize = preset.prompt_tokenizer
        self.best_of_n = BestOfN(
            preset.latent_shape, preset.config.max_timesteps, preset.config.guidance_scale
        )
        self.read_blocks = read_blocks
        self._captured: dict[int, torch.Tensor] = {}
        for block in read_blocks:
            preset.transformer.transformer_blocks[block].register_forward_hook(self._capture(block))

    def _capture(self, block: int):
        def hook(module, inputs, output):
            self._captured[block] = output

        return hook

    @torch.no_grad()
    def __call__(self, prompts: list[str], seeds: list[int], num_candidates: int) -> dict[str, np.ndarray]:
        """{"hidden_states_l{b}": (P*K, tokens, width) fp16, "denoised_latents": (P*K, C, h, w) fp16,
        "images": (P*K, H, W, 3) uint8}, candidates of prompt p in rows p*K .. p*K + K - 1."""
        states = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            tokens = self.tokenize(prompt)
            text = self._run(TEXT_ENCODER, input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
            states.append(
                self.best_of_n.initial_state(seed, list(range(num_candidates)), text["prompt_embeds"], tokens)
            )
        state = {name: torch.cat([torch.as_tensor(s[name]) for s in states]) for name in states[0]}
        state |= self._run(DIT_PREFIX, **state)
        hidden = {f"hidden_states_l{b}": self._captured[b].half().numpy() for b in self.read_blocks}
        state |= self._run(DIT_SUFFIX, **state)
        images = self._run(VAE_DECODER, **state)["images"]
        return {
            **hidden,
            "denoised_latents": state["denoised_latents"].half().numpy(),
            "images": to_uint8_images(images.numpy()),
        }

    def _run(self, engine: str, **inputs) -> dict[str, torch.Tensor]:
        tensors = {name: torch.as_tensor(value) for name, value in inputs.items()}
        return self.engines[engine](**tensors)


def build_shard(generator: CandidateGenerator, split: str, shard: int, path: Path) -> None:
    """Generate, label and write one shard (up to SHARD_PROMPTS prompts) of a split."""
    prompts = split_prompts(split)[shard * SHARD_PROMPTS : (shard + 1) * SHARD_PROMPTS]
    candidates = CANDIDATES[split]
    arrays: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(prompts), BATCH_PROMPTS):
        batch = prompts[start : start + BATCH_PROMPTS]
        outputs = generator([prompt_text(spec) for spec, _ in batch], [seed for _, seed in batch], candidates)
        for name, value in outputs.items():
            arrays.setdefault(name, []).append(value)
    tensors = {name: np.concatenate(values) for name, values in arrays.items()}
    tensors["prompt_index"] = np.repeat(np.arange(len(prompts), dtype=np.int32), candidates)
    record = {
        "prompts": [{"text": prompt_text(spec), "tag": spec.tag, "seed": seed} for spec, seed in prompts]
    }
    _write_labelled_shard(path, tensors, record)


def label_shard(path: Path) -> None:
    """Judge a shard's stored images again with the current evaluator (verdicts, captions, object
    maps), so a change of the evaluator does not need the candidates generated again."""
    _write_labelled_shard(path, load_file(str(path)), json.loads(path.with_suffix(".json").read_text()))


def _write_labelled_shard(path: Path, tensors: dict[str, np.ndarray], record: dict) -> None:
    """Add what the evaluator reads in every candidate (its verdict "passed", its caption and its
    object map, from one detection) and write the shard; it exists only once both files are whole."""
    specs = [parse_prompt(prompt["text"]) for prompt in record["prompts"]]
    objects = [detect_objects(image) for image in tensors["images"]]
    pairs = zip(objects, tensors["prompt_index"], strict=True)
    tensors["passed"] = np.array([check_objects(found, specs[p])[0] for found, p in pairs], np.uint8)
    # One cell per latent pixel: the DiT's tokens and z_0's (and, for `shapes`, CLIP's 8 x 8 patches).
    grid = tensors["denoised_latents"].shape[-1]
    tensors["object_map"] = np.stack([object_map(found, grid) for found in objects])
    record["captions"] = [caption_objects(found) for found in objects]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path.with_suffix(".tmp")))
    path.with_suffix(".json").write_text(json.dumps(record) + "\n")
    path.with_suffix(".tmp").replace(path)


def shard_paths(split: str, out_dir: Path = OUT_DIR, num_prompts: int | None = None) -> list[Path]:
    """The split's shards, or those of its first `num_prompts` prompts only."""
    prompts = len(split_prompts(split))
    if num_prompts is not None:
        prompts = min(prompts, num_prompts)
    count = -(-prompts // SHARD_PROMPTS)
    return [out_dir / split / f"shard_{i:04d}.safetensors" for i in range(count)]


def load_split(
    split: str, keys: tuple[str, ...], out_dir: Path = OUT_DIR
) -> tuple[dict[str, np.ndarray], dict]:
    """The named arrays of every shard of a built split, concatenated, and the shards' JSON records
    merged (prompt_index made global). Raises FileNotFoundError if the split was not built to the
    end (its data card is written last)."""
    if not (out_dir / split / "data_card.json").is_file():
        raise FileNotFoundError(
            f"{out_dir / split} is incomplete: run python -m vhs.train.verifier_data --split {split}"
        )
    return _read_shards(out_dir / split, keys)


def _read_shards(folder: Path, keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict]:
    arrays: dict[str, list[np.ndarray]] = {}
    prompts, captions = [], []
    for path in sorted(folder.glob("shard_*.safetensors")):
        record = json.loads(path.with_suffix(".json").read_text())
        with safe_open(str(path), "np") as shard:  # the named arrays only, not every stored block
            for key in keys:
                value = shard.get_tensor(key)
                arrays.setdefault(key, []).append(value + len(prompts) if key == "prompt_index" else value)
        prompts += record["prompts"]
        captions += record["captions"]
    return {key: np.concatenate(values) for key, values in arrays.items()}, {
        "prompts": prompts,
        "captions": captions,
    }


def data_card(split: str, out_dir: Path = OUT_DIR) -> dict:
    """What a built split holds, overall and per task: prompts (entries, distinct texts), candidates,
    the pass rate, and the share of prompts with both passing and failing candidates (the only ones a
    ranking loss learns from); written as data_card.json."""
    arrays, record = _read_shards(out_dir / split, ("passed", "prompt_index"))
    per_prompt = int(np.bincount(arrays["prompt_index"])[0])
    by_prompt = arrays["passed"].reshape(-1, per_prompt)
    mixed_prompts = mixed(by_prompt)
    prompt_tags = np.array([prompt["tag"] for prompt in record["prompts"]])
    texts = np.array([prompt["text"] for prompt in record["prompts"]])

    def summary(rows: np.ndarray) -> dict:
        return {
            "prompts": int(rows.sum()),
            "distinct_prompt_texts": len(set(texts[rows])),
            "candidates": int(rows.sum()) * per_prompt,
            "pass_rate": float(by_prompt[rows].mean()),
            "share_of_mixed_prompts": float(mixed_prompts[rows].mean()),
        }

    card = {
        "split": split,
        "candidates_per_prompt": per_prompt,
        **summary(np.ones(len(prompt_tags), bool)),
        "by_task": {tag: summary(prompt_tags == tag) for tag in TASKS if (prompt_tags == tag).any()},
        "labels": "the shapes evaluator's verdict on each decoded candidate (vhs.shapes.evaluate)",
        "stored": "hidden states after blocks "
        + ", ".join(map(str, READ_BLOCKS))
        + " (fp16), z_0 (fp16), the 64 x 64 image (uint8), the verdict, a caption of what it shows and"
        " its object map",
    }
    (out_dir / split / "data_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=tuple(CANDIDATES), required=True)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--relabel", action="store_true", help="judge the built shards' images again")
    parser.add_argument("--shards", default=":", metavar="START:STOP",
                        help="only these shards (a slice), so that processes share a split")  # fmt: skip
    parser.add_argument("--preset", default=PRESET, help="the preset (name or folder) whose generator draws")
    parser.add_argument("--prompts", type=int, metavar="N",
                        help="the first N prompts only: a study's subset, in its own --out-dir")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    paths = shard_paths(args.split, args.out_dir, args.prompts)
    shards = slice(*(int(bound) if bound else None for bound in args.shards.split(":")))
    if args.relabel:
        for path in tqdm(paths[shards], desc=f"relabelling {args.split}"):
            label_shard(path)
    else:
        generator = CandidateGenerator(args.preset)
        for shard in tqdm(range(len(paths))[shards], desc=f"{args.split} shards"):
            if not paths[shard].is_file():
                build_shard(generator, args.split, shard, paths[shard])
    if all(path.is_file() for path in paths):
        print(json.dumps(data_card(args.split, args.out_dir), indent=2))


if __name__ == "__main__":
    main()
