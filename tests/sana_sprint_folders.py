"""Folders as a user of the published checkpoints has them, built here on tiny weights: a diffusers
`SanaSprintPipeline` folder saved by diffusers' own `save_pretrained` (in fp32 or bf16) and a Qwen2
LLM folder with its tokenizer, as `Qwen/Qwen2.5-0.5B-Instruct` is laid out. Nothing here goes
through the project's preset code: the point is that the project reads folders it did not write.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import SanaSprintPipeline, SCMScheduler

from vhs.presets.builder import build_llm, build_text_encoder, build_transformer, build_vae
from vhs.presets.tiny_random import CORPUS, SIZES
from vhs.presets.tokenizers import build_gemma_tokenizer, build_qwen2_tokenizer

# The text encoder must take the complex_human_instruction plus a prompt (~1100 tiny-BPE tokens).
TEXT_POSITIONS = 2048


def save_sana_sprint_folder(folder: Path, dtype: torch.dtype, seed: int = 1) -> Path:
    """A tiny SanaSprintPipeline written by `SanaSprintPipeline.save_pretrained` in `dtype`."""
    torch.manual_seed(seed)
    tokenizer = build_gemma_tokenizer(CORPUS * 20, vocab_size=SIZES.vocab_size)
    pipeline = SanaSprintPipeline(
        tokenizer=tokenizer,
        text_encoder=build_text_encoder(SIZES, tokenizer, TEXT_POSITIONS),
        vae=build_vae(SIZES),
        transformer=build_transformer(SIZES),
        scheduler=SCMScheduler(sigma_data=0.5, prediction_type="trigflow"),
    )
    pipeline.to(dtype).save_pretrained(folder)
    return folder


def save_qwen2_folder(folder: Path, seed: int = 2) -> Path:
    """A tiny Qwen2ForCausalLM and its tokenizer (with a chat template) in one folder."""
    torch.manual_seed(seed)
    tokenizer = build_qwen2_tokenizer(CORPUS * 20, vocab_size=SIZES.vocab_size)
    build_llm(SIZES, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
