"""Memory of the sana-sprint engines on one GPU, computed from the published shapes.

    python -m vhs.export.sizing            # the table for one 80 GB GPU

Each published model is built from its configuration on torch's meta device (no weights: shapes
only) and run once per engine, as the served graphs run it, under a dispatch mode that follows every
tensor the forward creates until it is freed:

- weights: the parameter count x the bytes of the engine's precision under the precision policy
  (export/precision.py: fp16 weights for the weight GEMMs, fp32 for the text encoder and the VAE);
- activations: the peak of the tensors alive at once during the forward (what eager PyTorch
  holds, in fp32 as the policy keeps activations), at batch 1 and batch 2, so that the table has a
  fixed part and a per-row part. TensorRT plans its activation memory per engine and reuses
  buffers, so the eager peak is an upper bound of what a plan needs per row.

The budget of one GPU is split between every engine's weights and activations at its max batch (all
engines are loaded in one Triton server), the CUDA memory pool for the device tensors handed between
models, and a reserve for the CUDA contexts (tritonserver, one per orchestrator instance using the
device). An engine's max batch is the batch it sees at N = max candidates (`engine_rows`); while the
total exceeds the budget the engine with the largest activation share is halved, so the limit falls
where the memory is, and the orchestrator splits a larger call into chunks of that size.
"""

from __future__ import annotations

import argparse
import math
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from vhs.engine_names import (
    CLIP_LLM,
    CLIP_VISION,
    CONNECTOR,
    DIT_PREFIX,
    DIT_SUFFIX,
    LLM,
    TEXT_ENCODER,
    VAE_DECODER,
)

from .precision import engine_precision

GIB = 1 << 30
GPU_BYTES = 80 * 10**9  # an 80 GB H100 / A100
# CUDA contexts: tritonserver's and one per orchestrator instance (torch on the device), ~0.5 GiB each.
CONTEXT_BYTES = 0.5 * GIB
ORCHESTRATOR_INSTANCES = 4
# Margin left free on the GPU (allocator fragmentation, TensorRT's tactic workspace at load).
FREE_MARGIN = 0.10
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
# The published sana-sprint request: 300 prompt tokens + SanaSprintPipeline's instruction, a
# 32 x 32 x 32 latent (1024 tokens) decoded to 1024 x 1024 px, block 7's 1024 x 2240 states read by
# Qwen2.5-0.5B (width 896) after the connector, CLIP ViT-L/14 at 336 px (576 patches) for the baseline.
TEXT_TOKENS = 300
INSTRUCTION_TOKENS = 256  # an upper bound: diffusers' default instruction is ~1000 characters
QUESTION_TOKENS = 40 + 160  # the question around the visual tokens: chat markup, prefix, sana-sprint's 160
SPLIT_BLOCK = 7
MAX_CANDIDATES = 16


@dataclass(frozen=True)
class EngineMemory:
    """One engine's memory at a max batch."""

    name: str
    precision: str
    parameters: int
    weight_bytes: int
    fixed_activation_bytes: int  # at batch 0 (extrapolated)
    activation_bytes_per_row: int
    max_batch: int

    @property
    def total_bytes(self) -> int:
        return (
            self.weight_bytes + self.fixed_activation_bytes + self.max_batch * self.activation_bytes_per_row
        )


class LiveTensors(TorchDispatchMode):
    """Tracks the bytes of every tensor an op creates until it is freed; `peak` is the largest sum."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.storages:  # a view of a tracked tensor adds nothing
                    self.storages.add(key)
                    self.live += storage.nbytes()
                    weakref.finalize(tensor, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self.storages.discard(key)
        self.live -= nbytes


def activation_peak(module: torch.nn.Module, inputs: dict) -> int:
    """Peak bytes of the tensors a forward of `module` on `inputs` (meta tensors) holds at once,
    inputs included."""
    held = sum(t.untyped_storage().nbytes() for t in inputs.values() if isinstance(t, torch.Tensor))
    tracker = LiveTensors()
    with torch.no_grad(), tracker:
        module(**inputs)
    return held + tracker.peak


def published_engines(instruction_tokens: int = INSTRUCTION_TOKENS) -> dict[str, tuple]:
    """{engine: (module, inputs(batch) -> dict)} of the published models on the meta device, as served."""
    from vhs.dit_split import DiTPrefix, DiTSuffix
    from vhs.engines import VAEDecoder
    from vhs.presets.sana_sprint import published_models_on_meta
    from vhs.verifier import ClipVisualEncoder, MLPConnector

    meta = torch.device("meta")
    models = published_models_on_meta()
    transformer, vae, text_encoder, llm, clip_vision = (
        models[name] for name in ("transformer", "vae", "text_encoder", "llm", "clip_vision")
    )
    with meta:
        prefix = DiTPrefix(transformer, SPLIT_BLOCK, 0.5)
        suffix = DiTSuffix(transformer, SPLIT_BLOCK, 0.5)
        connector = MLPConnector(2240, 896)
        clip = ClipVisualEncoder(clip_vision, MLPConnector(1024, 896, normalize_input=False))
    text_tokens = TEXT_TOKENS + instruction_tokens

    def zeros(*shape, dtype=torch.float32):
        return torch.zeros(*shape, dtype=dtype, device=meta)

    def prefix_inputs(b):
        return {
            "noise": zeros(b, 32, 32, 32),
            "prompt_embeds": zeros(b, TEXT_TOKENS, 2304),
            "prompt_attention_mask": zeros(b, TEXT_TOKENS, dtype=torch.int64),
            "timestep": zeros(b),
            "guidance": zeros(b),
        }

    def suffix_inputs(b):
        return {
            "hidden_states": zeros(b, 1024, 2240),
            "block_modulation": zeros(b, 6 * 2240),
            "embedded_timestep": zeros(b, 2240),
            "encoder_hidden_states": zeros(b, TEXT_TOKENS, 2240),
            "encoder_attention_bias": zeros(b, 1, TEXT_TOKENS),
            "noise": zeros(b, 32, 32, 32),
            "timestep": zeros(b),
        }

    def forward_of(module, names):
        class Named(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, **inputs):
                return self.inner(*(inputs[name] for name in names))

        return Named()

    return {
        TEXT_ENCODER: (
            text_encoder,
            lambda b: {"input_ids": zeros(b, text_tokens, dtype=torch.int64)},
        ),
        DIT_PREFIX: (forward_of(prefix, list(prefix_inputs(1))), prefix_inputs),
        DIT_SUFFIX: (forward_of(suffix, list(suffix_inputs(1))), suffix_inputs),
        VAE_DECODER: (VAEDecoder(vae), lambda b: {"denoised_latents": zeros(b, 32, 32, 32)}),
        CONNECTOR: (connector, lambda b: {"features": zeros(b, 1024, 2240)}),
        LLM: (llm, lambda b: {"inputs_embeds": zeros(b, 1024 + QUESTION_TOKENS, 896)}),
        CLIP_VISION: (clip, lambda b: {"images": zeros(b, 3, 1024, 1024)}),
        CLIP_LLM: (llm, lambda b: {"inputs_embeds": zeros(b, 576 + QUESTION_TOKENS, 896)}),
    }


def needed_batch(engine: str, max_candidates: int = MAX_CANDIDATES) -> int:
    """The largest batch one request gives `engine` at N = max candidates in any served mode
    (vhs, clip, none); the text encoder is merged over the orchestrator instances' requests."""
    from vhs.modes import MODES

    if engine == TEXT_ENCODER:
        return ORCHESTRATOR_INSTANCES
    return max(MODES[mode].engine_rows(max_candidates).get(engine, 0) for mode in ("vhs", "clip", "none"))


def pool_bytes(max_candidates: int = MAX_CANDIDATES) -> int:
    """The CUDA memory pool: the device tensors one request hands between models at N candidates
    (the largest stage: the clip mode's decoded images, N x 3 x 1024 x 1024 fp32, with the DiT's
    states beside them), for every orchestrator instance at once, rounded up to whole GiB."""
    images = max_candidates * 3 * 1024 * 1024 * 4
    states = max_candidates * (1024 * 2240 + 6 * 2240 + 2240 + TEXT_TOKENS * 2240 + 2 * 32 * 32 * 32) * 4
    return math.ceil(ORCHESTRATOR_INSTANCES * (images + states) / GIB) * GIB


def memory_table(
    gpu_bytes: int = GPU_BYTES, requested_precision: str = "fp16", engines: dict | None = None
) -> tuple[list[EngineMemory], dict[str, int]]:
    """Every engine's memory at the max batch the budget allows, and the budget's parts."""
    engines = published_engines() if engines is None else engines
    rows = []
    for name, (module, inputs) in engines.items():
        precision = engine_precision(name, requested_precision)
        parameters = sum(p.numel() for p in module.parameters())
        one, two = activation_peak(module, inputs(1)), activation_peak(module, inputs(2))
        per_row = max(two - one, 0)
        rows.append(
            EngineMemory(
                name, precision, parameters, parameters * BYTES[precision], max(one - per_row, 0), per_row,
                needed_batch(name),
            )
        )  # fmt: skip
    pool = pool_bytes()
    reserve = int(CONTEXT_BYTES * (1 + ORCHESTRATOR_INSTANCES))
    budget = int(gpu_bytes * (1 - FREE_MARGIN)) - pool - reserve
    while sum(row.total_bytes for row in rows) > budget:
        widest = max(rows, key=lambda row: row.max_batch * row.activation_bytes_per_row)
        if widest.max_batch == 1:
            raise ValueError(f"the engines do not fit {gpu_bytes / 1e9:.0f} GB even at batch 1")
        index = rows.index(widest)
        rows[index] = EngineMemory(**{**widest.__dict__, "max_batch": widest.max_batch // 2})
    parts = {"gpu": gpu_bytes, "free_margin": gpu_bytes - int(gpu_bytes * (1 - FREE_MARGIN)), "pool": pool}
    parts |= {"contexts": reserve, "engines": sum(row.total_bytes for row in rows)}
    return rows, parts


def format_table(rows: Sequence[EngineMemory], parts: dict[str, int]) -> str:
    lines = [
        f"{'engine':<14}{'precision':>10}{'params (M)':>12}{'weights GiB':>13}{'act GiB/row':>13}"
        f"{'max batch':>11}{'total GiB':>11}"
    ]
    for row in rows:
        lines.append(
            f"{row.name:<14}{row.precision:>10}{row.parameters / 1e6:>12.0f}{row.weight_bytes / GIB:>13.2f}"
            f"{row.activation_bytes_per_row / GIB:>13.3f}{row.max_batch:>11}{row.total_bytes / GIB:>11.2f}"
        )
    lines.append(
        f"GPU {parts['gpu'] / 1e9:.0f} GB: engines {parts['engines'] / GIB:.1f} GiB + CUDA memory pool "
        f"{parts['pool'] / GIB:.0f} GiB + CUDA contexts {parts['contexts'] / GIB:.1f} GiB + free "
        f"{parts['free_margin'] / GIB:.1f} GiB"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vhs.export.sizing", description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-gb", type=float, default=GPU_BYTES / 1e9)
    parser.add_argument("--precision", choices=("fp16", "bf16", "fp32"), default="fp16")
    args = parser.parse_args(argv)
    rows, parts = memory_table(int(args.gpu_gb * 1e9), args.precision)
    print(format_table(rows, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
