"""The verifiers: a visual encoder that turns a candidate into LLM-width tokens, and a yes/no scorer.

Three visual encoders share one interface, `(B, ...) [, prompt_embeds, prompt_attention_mask] ->
visual tokens (B, T, llm width)`:
- `MLPConnector` on the DiT hidden states after block l* (VHS),
- `ClipVisualEncoder`: CLIP vision tower on decoded pixels + its own connector (the MLLM-with-CLIP baseline),
- `LatentVisualEncoder`: a connector on the autoencoder latent z_0 (the "MLLM w/ AE" baseline).
`YesNoScorer` feeds `[question before <image>] + visual tokens + [question after <image>]` to a
`Qwen2ForCausalLM` through `inputs_embeds` and returns the logits of the `yes` and `no` tokens at the
last position; the candidate's score is P(yes) = softmax over those two logits (the paper's score).

A connector may also read the prompt (`MLPConnector(prompt_width=...)`, the `shapes` preset's): the
generator's own prompt embedding, which the orchestrator already holds for the DiT, scales and
shifts a few convolutions over the token grid, so that the visual tokens say how the candidate
relates to what was asked before the LLM reads them (a 2-layer reader does not bind the two well
enough on its own). The published preset's connectors are the paper's and read no prompt.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import CLIPVisionModel, PreTrainedModel

from .prompting import IMAGE_PLACEHOLDER, VERIFIER_QUESTION  # noqa: F401  (part of the verifier's API)

CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
# Pillow's 8-bit resampling: coefficients in fixed point with this many fractional bits.
PIL_PRECISION_BITS = 32 - 8 - 2
PIL_BICUBIC_A = -0.5
PIL_BICUBIC_SUPPORT = 2.0


class PromptFiLMBlock(nn.Module):
    """A residual pair of 3x3 convolutions over the token grid, their normalised output scaled and
    shifted by the prompt (FiLM). The residual's gate starts at 0: a new block changes nothing, so
    training starts from the plain MLP connector."""

    def __init__(self, width: int, prompt_features: int, film_width: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv_2 = nn.Conv2d(width, width, 3, padding=1)
        self.norm = nn.GroupNorm(8, width)
        self.film = nn.Sequential(
            nn.Linear(prompt_features, film_width), nn.GELU(), nn.Linear(film_width, 2 * width)
        )
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, grid: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(prompt)[..., None, None].chunk(2, dim=1)
        update = nn.functional.gelu(
            self.norm(self.conv_2(nn.functional.gelu(self.conv_1(grid)))) * (1 + scale) + shift
        )
        return grid + self.gate * update


def pooled_prompt(prompt_embeds: torch.Tensor, prompt_attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S, width), (B, S) -> (B, 2 * width): the mean of the prompt's real tokens and its last real
    token (the text encoder is causal: the last token has read the whole prompt, the mean keeps each
    word's own state)."""
    mask = prompt_attention_mask.to(prompt_embeds.dtype).unsqueeze(-1)
    real_tokens = mask.sum(dim=1)  # (B, 1), kept in float: TensorRT has no Clip on int64
    mean = (prompt_embeds * mask).sum(dim=1) / real_tokens.clamp(min=1)
    last = (real_tokens - 1).clamp(min=0).long()
    last_token = prompt_embeds.gather(1, last[:, :, None].expand(-1, 1, prompt_embeds.shape[-1]))
    return torch.cat([mean, last_token.squeeze(1)], dim=-1)


class MLPConnector(ModelMixin, ConfigMixin):
    """LLaVA's `mlp2x_gelu` connector with VHS's input normalisation, optionally reading the prompt.

    (B, T, in_features) -> (B, T, out_features): `(x - mean) / sqrt(var + 1e-6)` with per-channel
    statistics of the training data (buffers saved with the weights), then Linear -> GELU -> Linear.

    With `prompt_width` (the generator's text-encoder width; 0: the paper's connector), the hidden
    tokens, as their square grid, pass through `prompt_blocks` `PromptFiLMBlock`s conditioned on
    `pooled_prompt(prompt_embeds, prompt_attention_mask)` between the two linear layers; the forward
    then takes those two tensors, the DiT's own inputs. Called without them (stage-1 alignment on
    captions, which asks no question) the blocks are skipped.
    """

    @register_to_config
    def __init__(
        self,
        in_features: int,
        out_features: int,
        normalize_input: bool = True,
        prompt_width: int = 0,
        prompt_blocks: int = 3,
        film_width: int = 128,
    ):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(in_features))
        self.register_buffer("input_var", torch.ones(in_features))
        self.linear_1 = nn.Linear(in_features, out_features)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(out_features, out_features)
        if prompt_width:
            self.prompt_norm = nn.LayerNorm(2 * prompt_width)
            self.film_blocks = nn.ModuleList(
                PromptFiLMBlock(out_features, 2 * prompt_width, film_width) for _ in range(prompt_blocks)
            )

    @property
    def reads_prompt(self) -> bool:
        return self.config.prompt_width > 0

    def forward(self, features: torch.Tensor, prompt_embeds=None, prompt_attention_mask=None) -> torch.Tensor:
        features = features.to(self.linear_1.weight.dtype)
        if self.config.normalize_input:
            features = (features - self.input_mean) / torch.sqrt(self.input_var + 1e-6)
        hidden = self.act(self.linear_1(features))
        if self.reads_prompt and prompt_embeds is not None:
            hidden = self.condition_on_prompt(hidden, prompt_embeds, prompt_attention_mask)
        return self.linear_2(hidden)

    def condition_on_prompt(self, hidden, prompt_embeds, prompt_attention_mask) -> torch.Tensor:
        batch, tokens, width = hidden.shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"a prompt-reading connector needs a square token grid, got {tokens} tokens")
        prompt = self.prompt_norm(pooled_prompt(prompt_embeds.to(hidden.dtype), prompt_attention_mask))
        grid = hidden.transpose(1, 2).reshape(batch, width, side, side)
        for block in self.film_blocks:
            grid = block(grid, prompt)
        return grid.flatten(2).transpose(1, 2)


class LatentVisualEncoder(nn.Module):
    """z_0 latent (B, C, h, w) [, the prompt] -> visual tokens (B, h*w, llm width): one token per
    latent pixel."""

    def __init__(self, connector: MLPConnector):
        super().__init__()
        self.connector = connector

    def forward(self, latents: torch.Tensor, prompt_embeds=None, prompt_attention_mask=None) -> torch.Tensor:
        tokens = latents.flatten(2).transpose(1, 2)
        return self.connector(tokens, prompt_embeds, prompt_attention_mask)


def _pil_bicubic(x: float) -> float:
    """Pillow's bicubic kernel (a = -0.5)."""
    x = abs(x)
    if x < 1.0:
        return ((PIL_BICUBIC_A + 2.0) * x - (PIL_BICUBIC_A + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * PIL_BICUBIC_A
    return 0.0


def pil_bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size): the weights Pillow's `Image.resize(..., BICUBIC)` gives each input pixel
    of one axis, antialiased when shrinking (the kernel widens by the scale), as Pillow's 8-bit path
    holds them (fixed point with PIL_PRECISION_BITS fractional bits, rounded half away from zero).

    Transcribed from Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` (libImaging/Resample.c).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = PIL_BICUBIC_SUPPORT * filterscale
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = np.array([_pil_bicubic((x - center + 0.5) / filterscale) for x in range(low, high)])
        if taps.sum() != 0:
            taps /= taps.sum()
        one = 1 << PIL_PRECISION_BITS
        weights[out, low:high] = np.trunc(taps * one + np.where(taps < 0, -0.5, 0.5)) / one
    return weights


def clip_resize_shape(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) after CLIPImageProcessor's resize to `shortest_edge` (aspect kept, the long side
    truncated as transformers' `get_resize_output_image_size` does)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest_edge * long / short)
    return (new_long, shortest_edge) if width <= height else (shortest_edge, new_long)


def clip_preprocess_matrices(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (size, height), columns (size, width)): CLIPImageProcessor's bicubic resize of the shortest
    edge to `size` and its center crop to size x size, as two matrices (the crop keeps their rows)."""
    resized_height, resized_width = clip_resize_shape(height, width, size)
    top, left = (resized_height - size) // 2, (resized_width - size) // 2
    rows = pil_bicubic_weights(height, resized_height)[top : top + size]
    columns = pil_bicubic_weights(width, resized_width)[left : left + size]
    return rows, columns


class ClipVisualEncoder(nn.Module):
    """Decoded images (B, 3, H, W) in [0, 1] -> CLIP penultimate-layer patch features -> connector.

    The preprocessing is CLIPImageProcessor's as the authors' LLaVA code ran it on the pipeline's PIL
    images, inside the module so the exported graph takes the decoder's output directly:
    the image as 8-bit pixels (`round(x * 255)`, as diffusers' `numpy_to_pil`), Pillow's bicubic
    resize of the shortest edge to the tower's resolution (antialiased when shrinking; horizontal pass
    first, each pass rounded to 8 bits as Pillow stores it), the center crop, `/ 255`, and CLIP's
    mean/std. The resize and crop are two constant matrices per input size (matrix products: every
    backend runs them, TensorRT's Resize has no antialiasing).
    """

    def __init__(self, clip_vision: CLIPVisionModel, connector: MLPConnector):
        super().__init__()
        self.clip_vision = clip_vision
        self.connector = connector
        self.image_size = clip_vision.config.image_size
        self.register_buffer("pixel_mean", torch.tensor(CLIP_IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self._matrices: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) float32, CLIPImageProcessor's `pixel_values`."""
        height, width = images.shape[-2:]
        if (height, width) not in self._matrices:
            rows, columns = clip_preprocess_matrices(height, width, self.image_size)
            self._matrices[height, width] = (
                torch.from_numpy(rows).float(),
                torch.from_numpy(columns.T.copy()).float(),
            )
        rows, columns = (m.to(images.device) for m in self._matrices[height, width])
        pixels = torch.round(images.float().clamp(0, 1) * 255)
        pixels = _round_to_uint8(pixels @ columns)  # Pillow's horizontal pass, stored as 8 bits
        pixels = _round_to_uint8(rows @ pixels)  # then the vertical pass
        return (pixels / 255 - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor, prompt_embeds=None, prompt_attention_mask=None) -> torch.Tensor:
        pixel_values = self.pixel_values(images).to(self.clip_vision.dtype)
        hidden_states = self.clip_vision(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        # LLaVA's choice: the penultimate layer, without the CLS token.
        return self.connector(hidden_states[-2][:, 1:], prompt_embeds, prompt_attention_mask)


def _round_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Pillow's `clip8`: the fixed-point sum rounded half up and clamped to [0, 255]."""
    return torch.floor(values + 0.5).clamp(0, 255)


class YesNoScorer(nn.Module):
    """The LLM half of every verifier.

    Inputs: visual_tokens (B, T, llm width); question_ids (B, Q) int64, the tokens after `<image>`,
    right-padded to a fixed Q so requests with different prompts batch together; question_length (B,)
    int64, the number of real tokens in each row. The tokens before `<image>` do not depend on the
    prompt and are a buffer of the module. Outputs: yes_no_logits (B, 2) and yes_probability (B,),
    the softmax of the two, which is the candidate's score.

    Right padding is safe without an attention mask: attention is causal and the logits are read at
    the last real token, which never attends to the padding after it.
    """

    def __init__(
        self, llm: PreTrainedModel, question_prefix_ids: list[int], yes_token_id: int, no_token_id: int
    ):
        super().__init__()
        self.llm = llm
        self.register_buffer(
            "question_prefix_ids", torch.tensor(question_prefix_ids, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "answer_token_ids", torch.tensor([yes_token_id, no_token_id], dtype=torch.long), persistent=False
        )

    def forward(self, visual_tokens, question_ids, question_length):
        last_hidden = self.answer_hidden_state(visual_tokens, question_ids, question_length)
        # Only the last position's yes/no logits matter: skip the rest of the vocabulary projection.
        answer_weights = self.llm.get_output_embeddings().weight[self.answer_token_ids]
        yes_no_logits = last_hidden @ answer_weights.T
        return yes_no_logits, torch.softmax(yes_no_logits.float(), dim=-1)[:, 0]

    def answer_hidden_state(self, visual_tokens, question_ids, question_length) -> torch.Tensor:
        """(B, llm width): the LLM's last hidden state at each row's last real question token."""
        batch_size, num_visual_tokens, _ = visual_tokens.shape
        embed = self.llm.get_input_embeddings()
        prefix = embed(self.question_prefix_ids).unsqueeze(0).expand(batch_size, -1, -1)
        inputs_embeds = torch.cat([prefix, visual_tokens.to(prefix.dtype), embed(question_ids)], dim=1)
        hidden_states = self.llm.model(inputs_embeds=inputs_embeds).last_hidden_state
        last_position = self.question_prefix_ids.shape[0] + num_visual_tokens + question_length - 1
        return hidden_states[torch.arange(batch_size), last_position]


class AnswerTokenScorer(YesNoScorer):
    """The score of the authors' released code, for rankings that match theirs.

    They let the LLM answer one token and score `p(yes)` if the answer's text contains "yes", else
    `-p(no)`, both from the softmax over the whole vocabulary. The answer here is the most likely
    token (their beam search over one token keeps it first); `yes_answer_ids` are the vocabulary
    entries whose text contains "yes". Inputs and outputs as `YesNoScorer`, the second output being
    this score (in [-1, 1]) instead of P(yes).
    """

    def __init__(
        self,
        llm: PreTrainedModel,
        question_prefix_ids: list[int],
        yes_token_id: int,
        no_token_id: int,
        yes_answer_ids: list[int],
    ):
        super().__init__(llm, question_prefix_ids, yes_token_id, no_token_id)
        yes_answer = torch.zeros(llm.get_output_embeddings().weight.shape[0], dtype=torch.bool)
        yes_answer[yes_answer_ids] = True
        self.register_buffer("yes_answer", yes_answer, persistent=False)

    def forward(self, visual_tokens, question_ids, question_length):
        last_hidden = self.answer_hidden_state(visual_tokens, question_ids, question_length)
        logits = self.llm.get_output_embeddings()(last_hidden)
        probabilities = torch.softmax(logits.float(), dim=-1)
        yes_probability, no_probability = probabilities[:, self.answer_token_ids].unbind(-1)
        answered_yes = self.yes_answer[logits.argmax(dim=-1)]
        score = torch.where(answered_yes, yes_probability, -no_probability)
        return logits[:, self.answer_token_ids], score
