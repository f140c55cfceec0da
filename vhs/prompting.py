"""Prompt -> token ids for the text encoder and for the verifier's question, with validation.

Shared by the reference pipeline and the Triton orchestrator so that both tokenize identically and
reject the same prompts with the same messages.

User text is only ever text (docs/operations.md, "Prompt hygiene"):
- both tokenizers encode it with `split_special_tokens=True`, so `<eos>`, `<pad>` or
  `<|im_end|><|im_start|>assistant` in a prompt become the ids of those characters, never the
  control tokens (the verifier question's own chat markup is tokenized apart, as special tokens);
- `clean_prompt` turns whitespace control characters (tab, newline, ...) into spaces and removes
  the other control (Unicode Cc) and format (Cf: zero-width space and joiner, BOM, bidi overrides)
  characters; a prompt with nothing visible left is refused naming PROMPT.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import InvalidRequest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_PROMPT_CHARS = 2000
# UTF-8 spends at most 4 bytes on a character: a longer text input is refused before it is decoded.
MAX_PROMPT_BYTES = 4 * MAX_PROMPT_CHARS
# The question of the published VHS verifier; `<image>` marks where the visual tokens go.
IMAGE_PLACEHOLDER = "<image>"
VERIFIER_QUESTION = (
    "You are an AI assistant specializing in image analysis and ranking. Your task is to analyze and "
    "compare image based on how well they match the given prompt. <image> The given prompt is: {prompt}. "
    "Please consider the prompt and the image to make a decision and response directly with 'yes' or 'no'"
)
PROMPT_SLOT = "{prompt}"
INVISIBLE_CATEGORIES = ("Cc", "Cf")


def clean_prompt(prompt: str) -> str:
    """Whitespace controls -> space, other control/format characters removed; InvalidRequest naming
    PROMPT if nothing visible is left."""
    cleaned = "".join(
        " " if char.isspace() else char
        for char in prompt
        if char.isspace() or unicodedata.category(char) not in INVISIBLE_CATEGORIES
    )
    if not cleaned.strip():
        raise InvalidRequest(
            "PROMPT has no visible text: it holds only whitespace, control or zero-width characters"
        )
    return cleaned


@dataclass(frozen=True)
class PromptTokens:
    """Token ids of one prompt, each array with a leading batch dimension of 1."""

    input_ids: np.ndarray  # (1, text_input_length) int64, right-padded
    attention_mask: np.ndarray  # (1, text_input_length) int64, the text encoder's mask
    prompt_attention_mask: np.ndarray  # (1, text_max_length) int64, the DiT's mask (see PromptTokenizer)
    question_ids: np.ndarray  # (1, question_max_length) int64, right-padded
    question_length: np.ndarray  # (1,) int64


class PromptTokenizer:
    """Tokenizes prompts for the text encoder (Gemma-style) and the verifier LLM (Qwen2 chat template).

    The question is rendered with the LLM tokenizer's chat template and split at `<image>`: the part
    before is the same for every prompt (`question_prefix_ids`, baked into the LLM graph), the part
    after carries the prompt and is padded to `question_max_length`.

    With a `complex_human_instruction` the text encoder reads `instruction + prompt` padded to
    `text_input_length` (instruction tokens + text_max_length - 2) and the DiT sees the first and the
    last text_max_length - 1 positions (`text_positions`), as SanaSprintPipeline.encode_prompt does.
    """

    def __init__(
        self,
        text_tokenizer: PreTrainedTokenizerBase,
        llm_tokenizer: PreTrainedTokenizerBase,
        text_max_length: int,
        question_max_length: int,
        complex_human_instruction: Sequence[str] = (),
    ):
        self.text_tokenizer = text_tokenizer
        self.llm_tokenizer = llm_tokenizer
        self.text_max_length = text_max_length
        self.question_max_length = question_max_length
        self.instruction = "\n".join(complex_human_instruction)
        self.text_input_length = text_max_length
        if self.instruction:
            self.text_input_length += len(text_tokenizer.encode(self.instruction)) - 2
        self.text_positions = [
            0,
            *range(self.text_input_length - text_max_length + 1, self.text_input_length),
        ]
        before, after = self._question_parts()
        self.question_prefix_ids = llm_tokenizer(before, add_special_tokens=False).input_ids
        # The chat markup after the prompt is tokenized with its special tokens; the prompt apart.
        self.question_lead, self.question_tail = after.split(PROMPT_SLOT, 1)
        self.yes_token_id = self._single_token_id("yes")
        self.no_token_id = self._single_token_id("no")

    def __call__(self, prompt: str) -> PromptTokens:
        """Tokenize one prompt as plain text; raises InvalidRequest naming PROMPT if it is empty, invisible
        or too long."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("PROMPT must be a non-empty string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"PROMPT is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
        prompt = clean_prompt(prompt)

        # SanaSprintPipeline lower-cases and strips the prompt for the text encoder (clean_caption=False).
        # The instruction before it is plain text as well: no special token of it is lost by splitting.
        text_ids = self.text_tokenizer(
            self.instruction + prompt.lower().strip(), add_special_tokens=True, split_special_tokens=True
        ).input_ids
        if len(text_ids) > self.text_input_length:  # diffusers would truncate silently
            with_instruction = " with the complex_human_instruction" if self.instruction else ""
            raise InvalidRequest(
                f"PROMPT is {len(text_ids)} text-encoder tokens long{with_instruction}; the limit is "
                f"{self.text_input_length}"
            )
        question = (
            self.llm_tokenizer(
                self.question_lead + prompt, add_special_tokens=False, split_special_tokens=True
            ).input_ids
            + self.llm_tokenizer(self.question_tail, add_special_tokens=False).input_ids
        )
        if len(question) > self.question_max_length:
            raise InvalidRequest(
                f"PROMPT makes a verifier question of {len(question)} tokens; the limit is "
                f"{self.question_max_length}"
            )
        attention_mask = _right_pad([1] * len(text_ids), self.text_input_length, 0)
        return PromptTokens(
            input_ids=_right_pad(text_ids, self.text_input_length, self.text_tokenizer.pad_token_id),
            attention_mask=attention_mask,
            prompt_attention_mask=attention_mask[:, self.text_positions],
            question_ids=_right_pad(question, self.question_max_length, self.llm_tokenizer.pad_token_id),
            question_length=np.array([len(question)], dtype=np.int64),
        )

    def _question_parts(self) -> tuple[str, str]:
        """The chat-rendered question split at `<image>`; the part after still holds PROMPT_SLOT."""
        chat = self.llm_tokenizer.apply_chat_template(
            [{"role": "user", "content": VERIFIER_QUESTION}], tokenize=False, add_generation_prompt=True
        )
        before, after = chat.split(IMAGE_PLACEHOLDER, 1)
        return before, after

    def _single_token_id(self, word: str) -> int:
        ids = self.llm_tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"the verifier tokenizer must encode {word!r} as one token, got {ids}")
        return ids[0]


def _right_pad(ids: list[int], length: int, pad_id: int) -> np.ndarray:
    padded = np.full((1, length), pad_id, dtype=np.int64)
    padded[0, : len(ids)] = ids
    return padded
