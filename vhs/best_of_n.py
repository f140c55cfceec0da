"""Best-of-N generation as a sequence of engine calls: the one orchestration code path.

The reference pipeline (PyTorch modules), the Triton orchestrator (BLS calls to engine models) and
the in-process ONNX Runtime baseline all run this function; they differ only in `run`, the callable
that executes one engine. The steps follow DESIGN.md §1:

    1. tokenize and encode the prompt (once, shared by all N candidates)
    2. draw the noise of candidates 0..N-1 from (seed, i)
    3. run the DiT prefix (blocks 0..l*) for all candidates
    4. score the candidates with the mode's verifier
    5. select the best one
    6. finish and decode: the DiT suffix and the VAE decoder, for the winner only in mode "vhs"

Arrays handed to `run` are numpy; what `run` returns may be numpy or torch tensors (on a GPU they
stay on the device): this code only slices rows and reads the N scores and the final image back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import engine_names as E
from .noise import candidate_noise
from .prompting import PromptTokenizer
from .request import GenerationRequest

# run(engine_name, **inputs) -> {output_name: array}
RunEngine = Callable[..., dict[str, Any]]


@dataclass
class GenerationOutput:
    image: np.ndarray  # (H, W, 3) uint8, the selected candidate
    scores: np.ndarray  # (N,) float32 P(yes); (0,) in mode "none"
    selected: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidate_images: np.ndarray | None = None  # (N, H, W, 3) uint8 when requested


def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, rounding as diffusers' `numpy_to_pil` does."""
    return (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def to_host(array: Any) -> np.ndarray:
    """A numpy array or a (possibly device) torch tensor -> numpy on the host."""
    return np.asarray(array.cpu() if hasattr(array, "cpu") else array)


class BestOfN:
    """Runs requests through the engines with a given `run`; `__call__` returns a `GenerationOutput`."""

    def __init__(
        self,
        run: RunEngine,
        prompt_tokenizer: PromptTokenizer,
        latent_shape: tuple[int, int, int],
        max_timesteps: float,
        guidance_scale: float,
    ):
        self.run = run
        self.prompt_tokenizer = prompt_tokenizer
        self.latent_shape = latent_shape
        self.max_timesteps = max_timesteps
        self.guidance_scale = guidance_scale

    def __call__(self, request: GenerationRequest, return_candidates: bool = False) -> GenerationOutput:
        timings_ms: dict[str, float] = {}
        call = _TimedRun(self.run, timings_ms)
        n = request.num_candidates
        every = [0] * n  # row index list that repeats a batch-1 tensor N times

        # 1. Encode the prompt once; every candidate shares the embeddings and the question.
        with _timed(timings_ms, "tokenize"):
            tokens = self.prompt_tokenizer(request.prompt)
        prompt_embeds = call(
            E.TEXT_ENCODER, input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        )["prompt_embeds"][every]
        question = {
            "question_ids": tokens.question_ids[every],
            "question_length": tokens.question_length[every],
        }

        # 2. Noise of candidates 0..N-1, a function of (seed, i) only.
        noise = candidate_noise(request.seed, range(n), self.latent_shape)
        timestep = np.full((n,), self.max_timesteps, dtype=np.float32)

        # 3. DiT blocks 0..l* for every candidate.
        prefix = call(
            E.DIT_PREFIX,
            noise=noise,
            prompt_embeds=prompt_embeds,
            prompt_attention_mask=tokens.attention_mask[every],
            timestep=timestep,
            guidance=np.full((n,), self.guidance_scale, dtype=np.float32),
        )
        suffix_inputs = {**prefix, "noise": noise, "timestep": timestep}

        # 4. Score every candidate with the mode's verifier.
        latents = images = None
        if request.mode == "vhs":
            visual = call(E.CONNECTOR, hidden_states=prefix["hidden_states"])
        elif request.mode == "latent":
            latents = call(E.DIT_SUFFIX, **suffix_inputs)["denoised_latents"]
            visual = call(E.LATENT_CONNECTOR, denoised_latents=latents)
        elif request.mode == "clip":
            latents = call(E.DIT_SUFFIX, **suffix_inputs)["denoised_latents"]
            images = call(E.VAE_DECODER, denoised_latents=latents)["images"]
            visual = call(E.CLIP_VISION, images=images)
        if request.mode == "none":
            scores = np.zeros(0, dtype=np.float32)
        else:
            scores = to_host(call(E.LLM, **visual, **question)["yes_probability"]).astype(np.float32)

        # 5. Select (Best-of-1 in mode "none" is candidate 0).
        selected = int(np.argmax(scores)) if len(scores) else 0
        winner = [selected]

        # 6. Finish and decode the winner only ("clip" has decoded every candidate already).
        if images is None:
            if latents is None:
                winner_inputs = {name: tensor[winner] for name, tensor in suffix_inputs.items()}
                winner_latents = call(E.DIT_SUFFIX, **winner_inputs)["denoised_latents"]
            else:
                winner_latents = latents[winner]
            winner_images = call(E.VAE_DECODER, denoised_latents=winner_latents)["images"]
        else:
            winner_images = images[winner]
        image = to_uint8_images(to_host(winner_images))[0]

        candidate_images = None
        if return_candidates:  # a debugging aid: decodes everyone, outside the timed stages
            all_latents = self.run(E.DIT_SUFFIX, **suffix_inputs)["denoised_latents"]
            candidate_images = to_uint8_images(
                to_host(self.run(E.VAE_DECODER, denoised_latents=all_latents)["images"])
            )
        return GenerationOutput(image, scores, selected, timings_ms, candidate_images)


class _TimedRun:
    def __init__(self, run: RunEngine, timings_ms: dict[str, float]):
        self.run = run
        self.timings_ms = timings_ms

    def __call__(self, engine: str, **inputs) -> dict[str, Any]:
        with _timed(self.timings_ms, engine):
            return self.run(engine, **inputs)


@contextmanager
def _timed(timings_ms: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings_ms[stage] = timings_ms.get(stage, 0.0) + (time.perf_counter() - start) * 1e3
