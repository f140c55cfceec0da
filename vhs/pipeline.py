"""The in-process reference pipeline: best-of-N generation with a verifier, in PyTorch.

It is the ground truth the served path is tested against and the "in-process" baseline of the
benchmarks. It runs the same engine modules that are exported, in the order of DESIGN.md §1:

    1. tokenize and encode the prompt (once, shared by all N candidates)
    2. draw the noise of candidates 0..N-1 from (seed, i)
    3. run the DiT prefix (blocks 0..l*) for all candidates
    4. score the candidates with the mode's verifier
    5. select the best one
    6. finish and decode: the DiT suffix and the VAE decoder, for the winner only in mode "vhs"
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import engines as E
from .noise import candidate_noise
from .presets import Preset
from .request import parse_request


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


class VHSPipeline:
    """Best-of-N text-to-image with a verifier; `__call__` returns a `GenerationOutput`."""

    def __init__(self, preset: Preset):
        self.config = preset.config
        self.latent_shape = preset.latent_shape
        self.prompt_tokenizer = preset.prompt_tokenizer
        self.engines = E.build_engines(preset)
        self._timings_ms: dict[str, float] = {}

    @classmethod
    def from_preset(cls, name_or_path: str) -> VHSPipeline:
        from .presets import load_preset

        return cls(load_preset(name_or_path))

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        num_candidates: int | None = None,
        seed: int | None = None,
        mode: str | None = None,
        return_candidates: bool = False,
    ) -> GenerationOutput:
        request = parse_request(self.config, prompt, num_candidates, seed, mode)
        self._timings_ms = {}
        n = request.num_candidates

        # 1. Encode the prompt once; every candidate shares the embeddings.
        with self._timed("tokenize"):
            tokens = self.prompt_tokenizer(request.prompt)
        prompt = self._run(E.TEXT_ENCODER, input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        prompt_embeds = prompt["prompt_embeds"].expand(n, -1, -1)
        question = {
            "question_ids": torch.from_numpy(tokens.question_ids).expand(n, -1),
            "question_length": torch.from_numpy(tokens.question_length).expand(n),
        }

        # 2. Noise of candidates 0..N-1.
        noise = torch.from_numpy(candidate_noise(request.seed, range(n), self.latent_shape))

        # 3. DiT blocks 0..l* for every candidate.
        prefix = self._run(
            E.DIT_PREFIX,
            noise=noise,
            prompt_embeds=prompt_embeds,
            prompt_attention_mask=torch.from_numpy(tokens.attention_mask).expand(n, -1),
            timestep=torch.full((n,), self.config.max_timesteps),
            guidance=torch.full((n,), self.config.guidance_scale),
        )
        suffix_inputs = {**prefix, "noise": noise, "timestep": torch.full((n,), self.config.max_timesteps)}

        # 4-6. Score, select, finish the winner.
        latents = images = None
        if request.mode == "none":
            scores, selected = torch.zeros(0), 0
        elif request.mode == "vhs":
            visual = self._run(E.CONNECTOR, hidden_states=prefix["hidden_states"])
            scores = self._run(E.LLM, **visual, **question)["yes_probability"]
        elif request.mode == "latent":
            latents = self._run(E.DIT_SUFFIX, **suffix_inputs)["denoised_latents"]
            visual = self._run(E.LATENT_CONNECTOR, denoised_latents=latents)
            scores = self._run(E.LLM, **visual, **question)["yes_probability"]
        else:  # clip
            latents = self._run(E.DIT_SUFFIX, **suffix_inputs)["denoised_latents"]
            images = self._run(E.VAE_DECODER, denoised_latents=latents)["images"]
            visual = self._run(E.CLIP_VISION, images=images)
            scores = self._run(E.LLM, **visual, **question)["yes_probability"]
        if len(scores):
            selected = int(torch.argmax(scores))

        # 6. Finish and decode the winner only ("clip" has decoded every candidate already).
        if images is not None:
            winner_images = images[selected : selected + 1]
        else:
            if latents is not None:
                winner_latents = latents[selected : selected + 1]
            else:
                winner_inputs = {
                    name: tensor[selected : selected + 1] for name, tensor in suffix_inputs.items()
                }
                winner_latents = self._run(E.DIT_SUFFIX, **winner_inputs)["denoised_latents"]
            winner_images = self._run(E.VAE_DECODER, denoised_latents=winner_latents)["images"]
        image = to_uint8_images(winner_images.numpy())[0]

        candidate_images = None
        if return_candidates:
            # Debugging aid, deliberately outside the timed stages.
            all_latents = self.engines[E.DIT_SUFFIX](**suffix_inputs)["denoised_latents"]
            all_images = self.engines[E.VAE_DECODER](denoised_latents=all_latents)["images"]
            candidate_images = to_uint8_images(all_images.numpy())
        return GenerationOutput(
            image, scores.numpy().astype(np.float32), selected, dict(self._timings_ms), candidate_images
        )

    def _run(self, engine: str, **inputs) -> dict[str, torch.Tensor]:
        tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
        with self._timed(engine):
            return self.engines[engine](**tensors)

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        self._timings_ms[stage] = self._timings_ms.get(stage, 0.0) + (time.perf_counter() - start) * 1e3
