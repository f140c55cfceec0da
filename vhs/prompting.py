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

The tokenizers are transformers' (the reference pipeline, the exporter) or, inside Triton, plain
`tokenizers` objects read from the same `tokenizer.json` files (`FastTokenizer`): the serving runtime
does not import transformers. The chat template is rendered once, where transformers is present, and
handed to the runtime as text (`PromptTokenizer.question_chat`, saved with `save_question_chat`).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

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
# The verifier question rendered with the LLM tokenizer's chat template, saved beside the tokenizers
# of a model repository so that the runtime needs no template engine.
QUESTION_CHAT_FILE = "verifier_question.json"


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
    after carries the prompt and is padded to `question_max_length`. The part after is tokenized as
    one piece, as LLaVA's `tokenizer_image_token` tokenizes each chunk around `<image>`: the prompt
    and the question text that follows it go through the tokenizer together (a prompt ending in
    punctuation merges with the `.` after it exactly as in the authors' code), with special-token
    text in the prompt read as text; the chat markup after the question text keeps its special tokens.
    `question_chat` (the rendered chat, as saved by `save_question_chat`) replaces the rendering, for
    tokenizers without a chat template engine (`FastTokenizer`).

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
        question_chat: str | None = None,
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
        self.question_chat = question_chat if question_chat is not None else self._render_question()
        before, after = self.question_chat.split(IMAGE_PLACEHOLDER, 1)
        self.question_prefix_ids = llm_tokenizer(before, add_special_tokens=False).input_ids
        self.question_lead, self.question_tail = after.split(PROMPT_SLOT, 1)
        # The question text after the prompt joins the prompt's piece; from the first special token on,
        # the chat markup is tokenized with its special tokens (tokenizers split at special tokens
        # first, so this equals tokenizing the whole chunk at once).
        markup_at = _first_special_token_at(self.question_tail, _special_token_texts(llm_tokenizer))
        self.question_text_tail = self.question_tail[:markup_at]
        self.question_markup_ids = llm_tokenizer(
            self.question_tail[markup_at:], add_special_tokens=False
        ).input_ids
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
                self.question_lead + prompt + self.question_text_tail,
                add_special_tokens=False,
                split_special_tokens=True,
            ).input_ids
            + self.question_markup_ids
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

    def _render_question(self) -> str:
        return render_question_chat(self.llm_tokenizer)

    def _single_token_id(self, word: str) -> int:
        ids = self.llm_tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"the verifier tokenizer must encode {word!r} as one token, got {ids}")
        return ids[0]


def _right_pad(ids: list[int], length: int, pad_id: int) -> np.ndarray:
    padded = np.full((1, length), pad_id, dtype=np.int64)
    padded[0, : len(ids)] = ids
    return padded


def _special_token_texts(tokenizer: Any) -> list[str]:
    """The text of every special token `tokenizer` recognises (its added special tokens)."""
    if isinstance(tokenizer, FastTokenizer):
        return tokenizer.special_tokens
    return [str(token) for token in tokenizer.all_special_tokens]


def _first_special_token_at(text: str, special_tokens: Sequence[str]) -> int:
    """Index of the first special-token text in `text` (len(text) when there is none)."""
    found = [text.find(token) for token in special_tokens if token and token in text]
    return min(found, default=len(text))


class FastTokenizer:
    """A `tokenizer.json` read by the `tokenizers` library, called as PromptTokenizer calls
    transformers' tokenizers: `tokenizer(text, add_special_tokens=..., split_special_tokens=...)`
    returns an object with `input_ids`, `encode(text)` the ids with special tokens added, and
    `pad_token_id`. It yields the ids transformers does for the same files (both run the same Rust
    tokenizer; transformers sets `encode_special_tokens` for `split_special_tokens` as done here).
    """

    def __init__(self, tokenizer: Any, pad_token_id: int):
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.special_tokens = [
            token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special
        ]
        self.all_special_ids = [tokenizer.token_to_id(token) for token in self.special_tokens]

    @classmethod
    def from_folder(cls, folder: str | Path) -> FastTokenizer:
        """Read `folder/tokenizer.json`, and the pad token from `folder/tokenizer_config.json`, as
        transformers' `save_pretrained` writes them."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        pad_token = config.get("pad_token")
        if isinstance(pad_token, dict):  # an AddedToken written out
            pad_token = pad_token.get("content")
        pad_token_id = tokenizer.token_to_id(pad_token) if pad_token else None
        if pad_token_id is None:
            raise ValueError(f"{folder}: tokenizer_config.json names no pad token of tokenizer.json")
        return cls(tokenizer, pad_token_id)

    def __call__(
        self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False
    ) -> SimpleNamespace:
        self.tokenizer.encode_special_tokens = split_special_tokens
        try:
            ids = self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        finally:
            self.tokenizer.encode_special_tokens = False
        return SimpleNamespace(input_ids=list(ids))

    def encode(self, text: str) -> list[int]:
        return self(text).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def render_question_chat(llm_tokenizer: PreTrainedTokenizerBase) -> str:
    """The verifier question as one user turn of `llm_tokenizer`'s chat template (transformers), with
    the generation prompt; it still holds `<image>` and PROMPT_SLOT."""
    return llm_tokenizer.apply_chat_template(
        [{"role": "user", "content": VERIFIER_QUESTION}], tokenize=False, add_generation_prompt=True
    )


def save_question_chat(folder: str | Path, question_chat: str) -> Path:
    """Write a rendered verifier question (`render_question_chat`) to `folder/QUESTION_CHAT_FILE`."""
    path = Path(folder) / QUESTION_CHAT_FILE
    path.write_text(json.dumps({"question_chat": question_chat}, indent=2) + "\n")
    return path


def load_question_chat(folder: str | Path) -> str:
    """The rendered verifier question saved by `save_question_chat` in `folder`; ValueError naming the
    file when it is missing (a repository exported before the file existed: re-export it)."""
    path = Path(folder) / QUESTION_CHAT_FILE
    try:
        return json.loads(path.read_text())["question_chat"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"cannot read the verifier question {path} ({error}): re-export the repository"
        ) from None
