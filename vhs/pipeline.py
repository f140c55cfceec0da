"""The in-process reference pipeline: best-of-N generation with PyTorch engines.

It is the ground truth the served path is tested against and the "in-process" baseline of the
benchmarks. The step sequence is `vhs.best_of_n.BestOfN`, shared with the Triton orchestrator;
here each engine is the PyTorch module that the exporter turns into a graph, called by the sync
driver.
"""

from __future__ import annotations

import numpy as np
import torch

from .best_of_n import BestOfN, GenerationOutput, run_steps
from .engines import build_engines
from .presets import Preset, load_preset
from .request import parse_request

__all__ = ["GenerationOutput", "VHSPipeline"]


class VHSPipeline:
    """Best-of-N text-to-image with a verifier; `__call__` returns a `GenerationOutput`."""

    def __init__(self, preset: Preset):
        self.config = preset.config
        self.prompt_tokenizer = preset.prompt_tokenizer
        self.engines = build_engines(preset)
        self.best_of_n = BestOfN(preset.latent_shape, self.config.max_timesteps, self.config.guidance_scale)

    @classmethod
    def from_preset(cls, name_or_path: str) -> VHSPipeline:
        return cls(load_preset(name_or_path))

    def __call__(
        self,
        prompt: str,
        num_candidates: int | None = None,
        seed: int | None = None,
        mode: str | None = None,
        return_candidates: bool = False,
    ) -> GenerationOutput:
        """Generate `num_candidates` candidates for `prompt` and return the one the `mode` verifier picks.

        Raises vhs.errors.InvalidRequest (a ValueError) naming the argument (PROMPT, NUM_CANDIDATES,
        SEED, MODE) when one is invalid.
        """
        request = parse_request(self.config, self.prompt_tokenizer, prompt, num_candidates, seed, mode)
        return run_steps(self.best_of_n.steps(request, return_candidates), self.run_engine)

    @torch.no_grad()
    def run_engine(self, engine: str, **inputs) -> dict[str, torch.Tensor]:
        """One engine on numpy or torch inputs (extra inputs ignored) -> {output name: tensor}."""
        tensors = {
            name: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for name, v in inputs.items()
        }
        return self.engines[engine](**tensors)
