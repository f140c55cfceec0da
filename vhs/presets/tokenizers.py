"""Tokenizers built in code, for presets whose weights this project makes itself.

No Gemma or Qwen vocabulary ships in a PyPI package and nothing may be downloaded, so small BPE
vocabularies are learned here with `tokenizers` and handed to transformers' own `GemmaTokenizer`
and `Qwen2Tokenizer` classes: the objects, files and `from_pretrained` path are then exactly those
of a published checkpoint, only the vocabulary is small.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GemmaTokenizer, Qwen2Tokenizer

# Qwen2's chat template, reduced to what the verifier uses (system + user + generation prompt).
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_GEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
_QWEN2_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_gemma_tokenizer(corpus: list[str], vocab_size: int = 512) -> GemmaTokenizer:
    """Learn a Gemma-style BPE (spaces as '▁', byte fallback) on `corpus`; returns a `GemmaTokenizer`."""
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    learner = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    learner.normalizer = normalizers.Replace(" ", "▁")
    learner.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
    learner.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=_GEMMA_SPECIAL_TOKENS + byte_tokens, show_progress=False
    )
    learner.train_from_iterator(corpus, trainer)
    vocab, merges = _vocab_and_merges(learner)
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, padding_side="right")


def build_qwen2_tokenizer(corpus: list[str], vocab_size: int = 512) -> Qwen2Tokenizer:
    """Learn a Qwen2-style byte-level BPE on `corpus`; returns a `Qwen2Tokenizer` with a chat template.

    `yes` and `no` are guaranteed single tokens: the verifier reads exactly those two logits.
    """
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_QWEN2_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    learner.train_from_iterator(corpus + ["yes", "no"] * 100, trainer)
    vocab, merges = _vocab_and_merges(learner)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        padding_side="right",
    )
    tokenizer.chat_template = QWEN2_CHAT_TEMPLATE
    return tokenizer


def _vocab_and_merges(learner: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(learner.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]
