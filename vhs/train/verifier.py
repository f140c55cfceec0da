"""Verifier training: one script for every verifier kind, as the paper trains VHS and its baselines.

    reads=hidden_states_l{b}   VHS: the MLP connector on the DiT hidden state after block b
    reads=denoised_latents     MLLM with AE: a connector on the autoencoder latent z_0
    reads=images               MLLM with CLIP: the project's CLIP vision tower (`vhs.train.clip_tower`,
                               pre-trained contrastively, frozen) + connector on pixels

Stages, on the candidates of `vhs.train.verifier_data` (train split; validation picks the checkpoint):
    0. language prior (shared by every verifier, cached): the LLM learns the world's language from
       prompts and captions only; no question/verdict text, which would teach it to answer from the
       prompt alone
    1. alignment (LLaVA stage 1): connector only, LLM frozen, language-model loss on a caption of
       what the candidate actually shows (the evaluator's detections), not on its prompt
    2. verifier fine-tuning: connector + LLM on the published question. Every batch holds all the
       candidates of BATCH_PROMPTS prompts, because Best-of-N only needs the order of one prompt's
       candidates: the default loss is pairwise (RankNet) on the yes-minus-no logit over pairs of a
       passing and a failing candidate of the same prompt, plus XE_WEIGHT x the weighted
       cross-entropy so that P(yes) stays a probability. "listwise" (ListNet over each prompt's
       candidates) and the paper's pointwise losses ("weighted_xe", "xe", "focal") are options. The
       score is P(yes) from the yes/no logits, as served. The checkpoint with the best
       within-prompt AUROC on validation is kept.

Stages 1 and 2 may also ask every visual token which object has its centre in its cell (the object
map of `verifier_data`, from the detections the caption is written from) through a linear head that
is dropped after training (--object-map-weight): the caption is one sentence per candidate and the
verdict one bit, the map names, counts and places every object at the token that sees it.

A connector that reads the prompt (`vhs.verifier.MLPConnector(prompt_width=...)`, every `shapes`
connector) is given the generator's embedding of the prompt each candidate is judged on, as served:
in stage 2 only (stage 1's captions ask no question, and its blocks start closed).

The connector's input normalisation (per-channel mean and variance of the training inputs) is
computed before stage 1 and stored in the connector. Runs unchanged under torchrun (DDP, gloo).

    python -m vhs.train.verifier --reads hidden_states_l7 --out build/train/verifiers/vhs_l7
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import CLIPVisionModel, Qwen2ForCausalLM

from ..engine_names import TEXT_ENCODER
from ..engines import build_engine
from ..presets import Preset, load_preset
from ..shapes import NUM_OBJECT_CLASSES
from ..verifier import ClipVisualEncoder, LatentVisualEncoder, MLPConnector, YesNoScorer
from .common import LossLog, cosine_learning_rate, untrained_preset
from .nearby_questions import load as load_nearby_questions
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import load_split
from .verifier_metrics import mixed, selection_metrics, selection_summary

# --- config ---------------------------------------------------------------------------------------
PRESET = "shapes"
SEED = 0
BATCH_SIZE = 64  # stages 0 and 1: texts / candidates per step
# Stage 2: each step holds CANDIDATES_PER_STEP random candidates of each of BATCH_PROMPTS prompts; a
# ranking loss draws among the prompts with both passing and failing candidates (the others carry no
# order), a pointwise loss among all. All 16 candidates of a prompt, chosen on validation: ~4x the
# pairs of 8 for 2x the compute (within-prompt AUROC of all 16 +0.015 +- 0.003 paired, Best-of-4
# unchanged; docs/training.md)
BATCH_PROMPTS, CANDIDATES_PER_STEP = 16, 16
PRIOR_STEPS, PRIOR_LR = 300, 2e-3
ALIGN_STEPS, ALIGN_LR = 100, 2e-3
# 900, chosen on validation from the seeded start: 300 had sufficed only while each training
# continued the previously shipped verifiers (within-prompt AUROC, all 16, AE-latent 0.626 -> 0.674,
# CLIP 0.595 -> 0.606, docs/training.md)
FINETUNE_STEPS, FINETUNE_LR = 900, 5e-4
EVAL_EVERY = 100
RANKING_LOSSES = ("pairwise", "listwise")
LOSSES = (*RANKING_LOSSES, "weighted_xe", "xe", "focal")
LOSS = "pairwise"
XE_WEIGHT = 0.1  # of the weighted cross-entropy beside a ranking loss
FOCAL_GAMMA = 2.0
# LLaVA keeps the CLIP tower frozen; the project's tower is small and pre-trained on little data, so
# stage 2 may fine-tune it with the rest (--tune-clip-tower; the served clip_vision is the tuned one).
TUNE_CLIP_TOWER = False
# LLaVA freezes its (strong) LLM in stage 1; this LLM has only read text, so stage 1 may train it on
# the captions too (--align-llm), which teaches it to read the visual tokens before stage 2 does.
ALIGN_LLM = False
OBJECT_MAP_WEIGHT = 0.0  # of the object-map loss beside stage 1's caption loss and stage 2's loss
# Stage 2 may also rank each prompt's candidates on nearby questions (vhs.train.nearby_questions).
NEARBY_QUESTIONS = False
# False: the paper's connector even where the preset's reads the prompt (the study's comparison).
CONNECTOR_READS_PROMPT = True
STATISTICS_ROWS = 4096  # candidates the connector's input mean and variance are estimated on
OUT_DIR = Path("build/train/verifiers")
PRIOR_DIR = OUT_DIR / "llm_prior"
CLIP_TOWER_DIR = OUT_DIR / "clip_tower"
# ---------------------------------------------------------------------------------------------------


class ObjectMapHead(nn.Module):
    """Training only: visual tokens (B, T, width) and their object maps (B, T) -> the cross-entropy of
    each token's object class, read linearly (so the tokens must say it). The few cells that hold an
    object's centre weigh half of the loss, the empty cells the other half: a map is mostly empty."""

    def __init__(self, width: int):
        super().__init__()
        self.classify = nn.Linear(width, NUM_OBJECT_CLASSES)

    def forward(self, visual_tokens: torch.Tensor, object_maps: torch.Tensor) -> torch.Tensor:
        if visual_tokens.shape[:2] != object_maps.shape:
            raise ValueError(
                f"object maps {tuple(object_maps.shape)} do not match the visual tokens "
                f"{tuple(visual_tokens.shape[:2])}: the map's grid must be the reader's token grid"
            )
        targets = object_maps.flatten().long()
        per_token = F.cross_entropy(self.classify(visual_tokens).flatten(0, 1), targets, reduction="none")
        has_object = targets > 0
        weights = torch.where(
            has_object, 0.5 / has_object.sum().clamp(min=1), 0.5 / (~has_object).sum().clamp(min=1)
        )
        return (per_token * weights).sum()


class VerifierForTraining(nn.Module):
    """A visual encoder + `YesNoScorer`: (visual input, question) -> yes/no logits (B, 2); given
    object maps too, (logits, the object-map loss of the visual tokens). `prompt`: the DiT's
    (prompt_embeds, prompt_attention_mask) rows, for a connector that reads the prompt (else ())."""

    def __init__(
        self, visual_encoder: nn.Module, scorer: YesNoScorer, object_head: ObjectMapHead | None = None
    ):
        super().__init__()
        self.visual_encoder = visual_encoder
        self.scorer = scorer
        self.object_head = object_head

    def forward(self, visual_input, question_ids, question_length, object_maps=None, prompt=()):
        # The padding after the longest question changes nothing (causal attention): drop it.
        question_ids = question_ids[:, : int(question_length.max())]
        visual = self.visual_encoder(visual_input, *prompt)
        logits = self.scorer(visual, question_ids, question_length)[0]
        return logits if object_maps is None else (logits, self.object_head(visual, object_maps))


class CaptionModel(nn.Module):
    """Stage 1: the language-model loss of a caption after [question prefix] + visual tokens, plus
    `object_weight` x the object-map loss where object maps are given."""

    def __init__(
        self, visual_encoder: nn.Module, llm: nn.Module, prefix_ids: list[int],
        object_head: ObjectMapHead | None = None, object_weight: float = 0.0,
    ):  # fmt: skip
        super().__init__()
        self.visual_encoder = visual_encoder
        self.llm = llm
        self.object_head = object_head
        self.object_weight = object_weight
        self.register_buffer("prefix_ids", torch.tensor(prefix_ids), persistent=False)

    def forward(self, visual_input, caption_ids, caption_mask, object_maps=None):
        visual = self.visual_encoder(visual_input)
        embed = self.llm.get_input_embeddings()
        batch = visual.shape[0]
        prefix = embed(self.prefix_ids).unsqueeze(0).expand(batch, -1, -1)
        inputs_embeds = torch.cat([prefix, visual, embed(caption_ids)], dim=1)
        ignored = torch.full((batch, prefix.shape[1] + visual.shape[1]), -100)
        labels = torch.cat([ignored, caption_ids.masked_fill(caption_mask == 0, -100)], dim=1)
        loss = self.llm(inputs_embeds=inputs_embeds, labels=labels).loss
        if object_maps is not None:
            loss = loss + self.object_weight * self.object_head(visual, object_maps)
        return loss


def starting_verifier(preset: Preset) -> Preset:
    """The preset whose verifier components a training starts from. For `shapes`, the components
    as seeded before any training (the seeded untrained preset, vhs.train.common), not the ones the
    preset ships, which are this training's own output: a retraining never starts from the last
    one, so `make train-verifier` gives the same weights whatever the preset ships. Any other preset
    (a real checkpoint: its pretrained LLM and fresh connectors; tiny-random) as it is. Torch's
    random state is left as it was: building or loading the untrained preset draws from it, and
    whether this process builds it (the first to ask) must not change what is initialised after."""
    if preset.config.name != "shapes":
        return preset
    with torch.random.fork_rng():
        return untrained_preset()


def visual_encoder_for(preset: Preset, reads: str, clip_tower: Path = CLIP_TOWER_DIR) -> nn.Module:
    """A fresh copy of the preset's visual encoder for what the verifier reads; for pixels, the
    project's pre-trained CLIP tower (`vhs.train.clip_tower`), frozen as in LLaVA."""
    if reads.startswith("hidden_states_l"):
        return copy.deepcopy(preset.connector)
    if reads == "denoised_latents":
        return LatentVisualEncoder(copy.deepcopy(preset.latent_connector))
    if reads == "images":
        tower = CLIPVisionModel.from_pretrained(clip_tower / "clip_vision").eval().requires_grad_(False)
        return ClipVisualEncoder(tower, copy.deepcopy(preset.clip_connector))
    raise ValueError(f"reads must be hidden_states_l<block>, denoised_latents or images, got {reads!r}")


def without_prompt(encoder: nn.Module) -> nn.Module:
    """`encoder` with the paper's connector: the same seeded layers and statistics, without the
    blocks that read the prompt (an encoder whose connector reads none is returned as it is)."""
    connector = connector_of(encoder)
    if not connector.reads_prompt:
        return encoder
    config = connector.config
    paper = MLPConnector(config.in_features, config.out_features, normalize_input=config.normalize_input)
    paper.load_state_dict(connector.state_dict(), strict=False)  # all but the prompt blocks
    if encoder is connector:
        return paper
    encoder.connector = paper
    return encoder


def connector_of(encoder: nn.Module) -> nn.Module:
    """The trained part of a visual encoder: its connector (a CLIP tower stays frozen)."""
    return getattr(encoder, "connector", encoder)


def as_model_input(rows: np.ndarray) -> torch.Tensor:
    """Stored features -> the visual encoder's input: float32; images (B, H, W, 3) uint8 become
    (B, 3, H, W) in [0, 1], the decoder's output."""
    if rows.dtype == np.uint8:
        return torch.from_numpy(rows).permute(0, 3, 1, 2).float() / 255
    return torch.from_numpy(rows).float()


def set_input_statistics(encoder: nn.Module, features: np.ndarray) -> None:
    """Store the per-channel mean and variance of the training inputs in the connector: channels are
    the last axis of hidden states (N, tokens, width) and the second of latents (N, C, h, w).
    Estimated on STATISTICS_ROWS evenly spaced candidates (every candidate would not change them)."""
    connector = connector_of(encoder)
    if not connector.config.normalize_input:
        return
    features = features[:: max(1, len(features) // STATISTICS_ROWS)]
    channels = np.moveaxis(features, 1, -1) if features.ndim == 4 else features
    flat = channels.reshape(-1, channels.shape[-1]).astype(np.float64)
    connector.input_mean.copy_(torch.from_numpy(flat.mean(axis=0)).float())
    connector.input_var.copy_(torch.from_numpy(flat.var(axis=0)).float())


def pad_token_ids(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (B, longest + 1): each text's tokens and the end-of-text token, right-padded."""
    rows = [tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for text in texts]
    ids = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    return ids, mask


def classification_loss(logits: torch.Tensor, passed: torch.Tensor, kind: str, class_weights: torch.Tensor):
    """The pointwise yes/no loss; logits (B, 2) are [yes, no], passed (B,) the evaluator's verdict."""
    target = 1 - passed.long()  # index 0 is "yes"
    if kind == "xe":
        return F.cross_entropy(logits, target)
    if kind == "weighted_xe":
        return F.cross_entropy(logits, target, weight=class_weights)
    if kind == "focal":
        cross_entropy = F.cross_entropy(logits, target, reduction="none")
        return ((1 - torch.exp(-cross_entropy)) ** FOCAL_GAMMA * cross_entropy).mean()
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


def ranking_loss(margins: torch.Tensor, passed: torch.Tensor, kind: str) -> torch.Tensor:
    """A within-prompt ranking loss on the yes-minus-no logits `margins` (P, K) of P prompts' K
    candidates, `passed` (P, K) their verdicts. Prompts whose candidates all pass or all fail carry
    no order and add nothing; a batch without any mixed prompt gives 0 (with a gradient graph).

    pairwise: RankNet's logistic loss over every (passing, failing) pair of a prompt, each pair
        weighing the same.
    listwise: ListNet's cross-entropy between the softmax of a prompt's margins and the uniform
        distribution over its passing candidates, each mixed prompt weighing the same.
    """
    passed = passed.bool()
    mixed = passed.any(dim=1) & ~passed.all(dim=1)
    if not mixed.any():
        return margins.sum() * 0
    margins, passed = margins[mixed], passed[mixed]
    if kind == "pairwise":
        pairs = passed[:, :, None] & ~passed[:, None, :]  # (P, K, K): i passes, j fails
        differences = margins[:, :, None] - margins[:, None, :]
        return F.softplus(-differences)[pairs].mean()
    if kind == "listwise":
        target = passed.float() / passed.sum(dim=1, keepdim=True)
        return -(target * F.log_softmax(margins, dim=1)).sum(dim=1).mean()
    raise ValueError(f"ranking loss must be pairwise or listwise, got {kind!r}")


def batches(num_rows: int, steps: int, stage: int, batch_size: int = BATCH_SIZE):
    """Random row indices of each step: the same on every run, different per process rank."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    for step in range(steps):
        rng = np.random.default_rng([SEED, stage, step, rank])
        yield step, rng.integers(num_rows, size=batch_size)


def optimize(
    model: nn.Module,
    loss_of_batch,
    steps: int,
    peak_lr: float,
    stage: int,
    num_rows: int,
    log,
    on_eval=None,
    batch_size: int = BATCH_SIZE,
):
    """The training loop of a stage: AdamW on the trainable parameters, cosine schedule, a log line
    every 20 steps and `on_eval(step)` every EVAL_EVERY steps and at the end. `loss_of_batch(model,
    rows)` gets `batch_size` random indices out of `num_rows` (candidates, texts or prompts)."""
    if dist.is_initialized():
        # Stage 1 leaves a prompt-reading connector's blocks unused (captions ask no question).
        model = DistributedDataParallel(model, find_unused_parameters=True)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=peak_lr, weight_decay=0.0)
    model.train()
    steps_and_rows = batches(num_rows, steps, stage, batch_size)
    for step, rows in tqdm(steps_and_rows, total=steps, desc=f"stage {stage}", leave=False):
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(step, steps, peak_lr, peak_lr / 10, warmup_steps=steps // 20)
        loss = loss_of_batch(model, rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 20 == 0:
            log(step, **{f"stage{stage}_loss": loss.item()})
        if on_eval is not None and ((step + 1) % EVAL_EVERY == 0 or step == steps - 1):
            model.eval()
            on_eval(step + 1)
            model.train()
    model.eval()


def prior_texts(train_record: dict) -> list[str]:
    """What the language prior reads: the training prompts and the captions of their candidates."""
    return [prompt["text"] for prompt in train_record["prompts"]] + train_record["captions"]


def train_language_prior(preset: Preset, texts: list[str], out: Path) -> nn.Module:
    """Stage 0: the LLM of `preset` (the training's `starting_verifier`) trained on the world's texts;
    cached in `out`."""
    if (out / "config.json").is_file():
        return Qwen2ForCausalLM.from_pretrained(out)
    llm = copy.deepcopy(preset.llm).train().requires_grad_(True)
    ids, mask = pad_token_ids(preset.llm_tokenizer, texts)
    labels = ids.masked_fill(mask == 0, -100)

    def loss_of_batch(model, rows):
        return model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows]).loss

    optimize(llm, loss_of_batch, PRIOR_STEPS, PRIOR_LR, 0, len(texts), LossLog(out))
    if not dist.is_initialized() or dist.get_rank() == 0:
        llm.save_pretrained(out)
    return llm


def question_tensors(preset: Preset, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(question_ids (P, Q), question_length (P,)) of each prompt, as served."""
    tokens = [preset.prompt_tokenizer(prompt) for prompt in prompts]
    return (
        torch.from_numpy(np.concatenate([t.question_ids for t in tokens])),
        torch.from_numpy(np.concatenate([t.question_length for t in tokens])),
    )


def prompt_tensors(preset: Preset, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds (P, S, width), prompt_attention_mask (P, S)) of each prompt, as the served text
    encoder gives the DiT (what a prompt-reading connector reads)."""
    text_encoder = build_engine(preset, TEXT_ENCODER)
    tokens = [preset.prompt_tokenizer(prompt) for prompt in prompts]
    embeds = []
    with torch.no_grad():
        for start in range(0, len(tokens), 512):
            chunk = tokens[start : start + 512]
            input_ids, attention_mask = (
                torch.from_numpy(np.concatenate([getattr(t, name) for t in chunk]))
                for name in ("input_ids", "attention_mask")
            )
            embeds.append(text_encoder(input_ids=input_ids, attention_mask=attention_mask)["prompt_embeds"])
    return torch.cat(embeds), torch.from_numpy(np.concatenate([t.prompt_attention_mask for t in tokens]))


def score(
    model: VerifierForTraining, features: np.ndarray, question_ids, question_length, prompt_index, prompt=()
) -> np.ndarray:
    """P(yes) of every candidate (N,), in batches; `prompt`: `prompt_tensors` of the prompts, for a
    connector that reads them (else ())."""
    scores = []
    with torch.no_grad():
        for start in range(0, len(features), 512):
            rows = np.arange(start, min(start + 512, len(features)))
            prompts = prompt_index[rows]
            logits = model(
                as_model_input(features[rows]), question_ids[prompts], question_length[prompts],
                prompt=tuple(tensor[prompts] for tensor in prompt),
            )  # fmt: skip
            scores.append(torch.softmax(logits.float(), dim=-1)[:, 0].numpy())
    return np.concatenate(scores)


def train_verifier(
    reads: str,
    out: Path,
    loss_kind: str = LOSS,
    preset_name: str = PRESET,
    data_dir: Path = DATA_DIR,
    prior_dir: Path = PRIOR_DIR,
    tune_tower: bool = TUNE_CLIP_TOWER,
    align_llm: bool = ALIGN_LLM,
    clip_tower: Path = CLIP_TOWER_DIR,
    object_map_weight: float = OBJECT_MAP_WEIGHT,
    nearby_questions: bool = NEARBY_QUESTIONS,
    connector_reads_prompt: bool = CONNECTOR_READS_PROMPT,
) -> dict:
    """Stages 0-2 for one verifier; writes `out/{connector,llm}` and `out/metrics.json` (the
    validation metrics of the kept checkpoint). Returns those metrics."""
    torch.manual_seed(SEED)
    started = time.monotonic()
    preset = load_preset(preset_name)
    uses_maps = object_map_weight > 0
    train, train_record = load_split(
        "train", (reads, "passed", "prompt_index", *(("object_map",) if uses_maps else ())), data_dir
    )
    validation, validation_record = load_split("validation", (reads, "passed", "prompt_index"), data_dir)
    prompts = [p["text"] for p in train_record["prompts"]]
    passed = torch.from_numpy(train["passed"].astype(np.int64))
    tokenizer = preset.llm_tokenizer

    start = starting_verifier(preset)
    llm = copy.deepcopy(train_language_prior(start, prior_texts(train_record), prior_dir))
    encoder = visual_encoder_for(start, reads, clip_tower)
    if not connector_reads_prompt:
        encoder = without_prompt(encoder)
    set_input_statistics(encoder, train[reads])
    log = LossLog(out)

    # Stage 1: alignment on what each candidate shows.
    caption_ids, caption_mask = pad_token_ids(tokenizer, train_record["captions"])
    llm.requires_grad_(align_llm)
    connector_of(encoder).requires_grad_(True)
    object_head = ObjectMapHead(llm.config.hidden_size) if uses_maps else None
    object_maps = torch.from_numpy(train["object_map"]) if uses_maps else None
    caption_model = CaptionModel(
        encoder, llm, preset.prompt_tokenizer.question_prefix_ids, object_head, object_map_weight
    )
    features = train[reads]

    def alignment_loss(model, rows):
        maps = object_maps[rows] if uses_maps else None
        return model(as_model_input(features[rows]), caption_ids[rows], caption_mask[rows], maps)

    optimize(caption_model, alignment_loss, ALIGN_STEPS, ALIGN_LR, 1, len(features), log)

    # Stage 2: the verifier question, yes/no, on batches of whole prompts.
    llm.requires_grad_(True)
    if reads == "images" and tune_tower:
        encoder.clip_vision.requires_grad_(True)
    scorer = YesNoScorer(
        llm, preset.prompt_tokenizer.question_prefix_ids, preset.prompt_tokenizer.yes_token_id,
        preset.prompt_tokenizer.no_token_id,
    )  # fmt: skip
    model = VerifierForTraining(encoder, scorer, object_head)
    validation_texts = [p["text"] for p in validation_record["prompts"]]
    val_questions = question_tensors(preset, validation_texts)
    reads_prompt = connector_of(encoder).reads_prompt
    val_prompts = prompt_tensors(preset, validation_texts) if reads_prompt else ()
    positive_rate = float(passed.float().mean())
    # Each class weighs half of the loss ([yes, no]); +1 keeps a class absent from a tiny set finite.
    counts = torch.stack([passed.sum(), (1 - passed).sum()]).float() + 1
    class_weights = counts.sum() / (2 * counts)
    per_prompt = int(np.bincount(train["prompt_index"])[0])
    if not (train["prompt_index"] == np.repeat(np.arange(len(prompts)), per_prompt)).all():
        raise ValueError("the train split must hold the same number of candidates for every prompt, in order")
    # Stage 2 learns on groups: a prompt's candidates and the question they are judged on, the
    # prompt's own and, with nearby questions, each of those (vhs.train.nearby_questions).
    group_prompt = group_question = np.arange(len(prompts))
    group_verdicts = train["passed"].reshape(-1, per_prompt)
    question_texts = list(prompts)
    if nearby_questions:
        nearby_prompt, nearby_verdicts, nearby_texts = load_nearby_questions("train", data_dir)
        group_prompt = np.concatenate([group_prompt, nearby_prompt])
        group_question = np.concatenate([group_question, len(prompts) + np.arange(len(nearby_texts))])
        group_verdicts = np.concatenate([group_verdicts, nearby_verdicts])
        question_texts += nearby_texts
    question_ids, question_length = question_tensors(preset, question_texts)
    # A prompt-reading connector reads the prompt the candidates are judged on.
    question_prompts = prompt_tensors(preset, question_texts) if reads_prompt else ()
    mixed_groups = np.flatnonzero(mixed(group_verdicts))
    own_mixed, nearby_mixed = (
        mixed_groups[mixed_groups < len(prompts)],
        mixed_groups[mixed_groups >= len(prompts)],
    )
    ranks = loss_kind in RANKING_LOSSES and len(mixed_groups) > 0
    pointwise = "weighted_xe" if loss_kind in RANKING_LOSSES else loss_kind
    drawn_groups = mixed_groups if ranks else np.arange(len(group_verdicts))
    if ranks and len(nearby_mixed) > len(own_mixed) > 0:
        # The own prompts, repeated, are drawn about as often as all nearby questions together: half
        # of every step still asks what serving asks.
        drawn_groups = np.concatenate(
            [np.tile(own_mixed, round(len(nearby_mixed) / len(own_mixed))), nearby_mixed]
        )
    group_verdicts = torch.from_numpy(group_verdicts.astype(np.int64))
    candidates_per_step = min(CANDIDATES_PER_STEP, per_prompt)

    def finetune_loss(model, draws):
        groups = drawn_groups[draws]
        rng = np.random.default_rng(draws)  # which candidates: fixed by the step's draw
        picks = np.argsort(rng.random((len(draws), per_prompt)), axis=1)[:, :candidates_per_step]
        rows = (group_prompt[groups][:, None] * per_prompt + picks).ravel()
        questions = np.repeat(group_question[groups], candidates_per_step)
        verdicts = group_verdicts[torch.from_numpy(groups)[:, None], torch.from_numpy(picks)].ravel()
        inputs = (as_model_input(features[rows]), question_ids[questions], question_length[questions])
        prompt = tuple(tensor[questions] for tensor in question_prompts)
        outputs = model(*inputs, object_maps[rows] if uses_maps else None, prompt)
        logits, map_loss = outputs if uses_maps else (outputs, 0.0)
        if not ranks:
            loss = classification_loss(logits, verdicts, pointwise, class_weights)
        else:
            margins = (logits[:, 0] - logits[:, 1]).view(len(draws), candidates_per_step)
            loss = ranking_loss(
                margins, verdicts.view(len(draws), -1), loss_kind
            ) + XE_WEIGHT * classification_loss(logits, verdicts, pointwise, class_weights)
        return loss + object_map_weight * map_loss

    best = {}

    def evaluate_on_validation(step: int) -> None:
        scores = score(model, validation[reads], *val_questions, validation["prompt_index"], val_prompts)
        metrics = selection_metrics(scores, validation["passed"], validation["prompt_index"])
        log(step, **{f"validation_{k}": v for k, v in metrics.items()})
        if not best or metrics["within_prompt_auroc"] > best["within_prompt_auroc"]:
            best.update(metrics, step=step, state=copy.deepcopy(model.state_dict()), scores=scores)

    optimize(
        model, finetune_loss, FINETUNE_STEPS, FINETUNE_LR, 2, len(drawn_groups), log, evaluate_on_validation,
        batch_size=BATCH_PROMPTS,
    )  # fmt: skip
    model.load_state_dict(best.pop("state"))
    check_replicas_equal(model)
    validation_tags = [p["tag"] for p in validation_record["prompts"]]
    # What Best-of-4 gets on validation, as the evaluation table reports it (the first 4 candidates).
    best["best_of_4"] = selection_summary(
        best.pop("scores"), validation["passed"], validation["prompt_index"], validation_tags
    )
    metrics = {
        "reads": reads,
        "loss": loss_kind,
        **({"clip_tower": "fine-tuned in stage 2" if tune_tower else "frozen"} if reads == "images" else {}),
        "validation": best,
        "train_positive_rate": positive_rate,
        "train_candidates": len(features),
        "train_prompts_with_passing_and_failing_candidates": len(own_mixed),
        **(
            {"nearby_questions_with_passing_and_failing_candidates": len(nearby_mixed)}
            if nearby_questions
            else {}
        ),
        "steps": {"prior": PRIOR_STEPS, "alignment": ALIGN_STEPS, "fine_tuning": FINETUNE_STEPS},
        "fine_tuning_lr": FINETUNE_LR,
        "alignment_trains": "connector + LLM" if align_llm else "connector",
        "connector_reads_prompt": reads_prompt,
        "object_map_weight": object_map_weight,
        "fine_tuning_batch": f"{BATCH_PROMPTS} prompts x {candidates_per_step} candidates",
        "train_seconds": round(time.monotonic() - started),
    }
    if not dist.is_initialized() or dist.get_rank() == 0:
        connector_of(encoder).save_pretrained(out / "connector")
        if reads == "images":
            encoder.clip_vision.save_pretrained(out / "clip_vision")
        llm.save_pretrained(out / "llm")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def check_replicas_equal(module: nn.Module) -> None:
    """Under DDP, raise unless every process holds the same parameters (a sum over all of them)."""
    if not dist.is_initialized():
        return
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().view(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"replicas diverged: parameter sums {[g.item() for g in gathered]}")


def main() -> None:
    global PRIOR_STEPS, ALIGN_STEPS, FINETUNE_STEPS, FINETUNE_LR, EVAL_EVERY
    global BATCH_PROMPTS, CANDIDATES_PER_STEP
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", help="hidden_states_l<block>, denoised_latents or images")
    parser.add_argument("--loss", default=LOSS, choices=LOSSES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--preset", default=PRESET)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--prior-dir", type=Path, default=PRIOR_DIR)
    parser.add_argument("--clip-tower", type=Path, default=CLIP_TOWER_DIR, help="clip_tower's --out")
    parser.add_argument("--prior-only", action="store_true",
                        help="train (or find) the shared language prior in --prior-dir and stop")  # fmt: skip
    parser.add_argument("--steps", type=int, nargs=3, metavar=("PRIOR", "ALIGN", "FINETUNE"),
                        default=(PRIOR_STEPS, ALIGN_STEPS, FINETUNE_STEPS))  # fmt: skip
    parser.add_argument("--finetune-lr", type=float, default=FINETUNE_LR)
    parser.add_argument(
        "--batch", type=int, nargs=2, metavar=("PROMPTS", "CANDIDATES"), help="of each fine-tuning step",
        default=(BATCH_PROMPTS, CANDIDATES_PER_STEP),
    )  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=EVAL_EVERY)
    parser.add_argument("--tune-clip-tower", action=argparse.BooleanOptionalAction, default=TUNE_CLIP_TOWER)
    parser.add_argument("--align-llm", action=argparse.BooleanOptionalAction, default=ALIGN_LLM)
    parser.add_argument("--object-map-weight", type=float, default=OBJECT_MAP_WEIGHT,
                        help="of the object-map loss in stages 1 and 2 (0: none)")  # fmt: skip
    parser.add_argument("--nearby-questions", action=argparse.BooleanOptionalAction, default=NEARBY_QUESTIONS,
                        help="stage 2 also ranks on vhs.train.nearby_questions")  # fmt: skip
    parser.add_argument("--connector-reads-prompt", action=argparse.BooleanOptionalAction,
                        default=CONNECTOR_READS_PROMPT,
                        help="--no-...: the paper's connector (the study's comparison)")  # fmt: skip
    args = parser.parse_args()
    if not args.prior_only and (args.reads is None or args.out is None):
        parser.error("--reads and --out are required (unless --prior-only)")
    PRIOR_STEPS, ALIGN_STEPS, FINETUNE_STEPS = args.steps
    EVAL_EVERY, FINETUNE_LR = args.eval_every, args.finetune_lr
    BATCH_PROMPTS, CANDIDATES_PER_STEP = args.batch
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    if args.prior_only:  # one process trains the prior every verifier starts from (`make -j2` safe)
        record = load_split("train", ("passed",), args.data_dir)[1]
        torch.manual_seed(SEED)  # as train_verifier seeds it: the same prior either way
        start = starting_verifier(load_preset(args.preset, components=("llm",)))
        train_language_prior(start, prior_texts(record), args.prior_dir)
        return
    metrics = train_verifier(
        args.reads, args.out, args.loss, args.preset, args.data_dir, args.prior_dir, args.tune_clip_tower,
        args.align_llm, args.clip_tower, args.object_map_weight, args.nearby_questions,
        args.connector_reads_prompt,
    )  # fmt: skip
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps(metrics, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
