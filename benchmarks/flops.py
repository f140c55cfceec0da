"""Per-candidate compute of each engine, published SANA-Sprint + VHS models vs a preset.

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on one forward pass of batch 1.
The published models are instantiated on the meta device from their configs (no weights needed):
SANA-Sprint 1.6B transformer (20 blocks, 70 heads x 32, cross 20 x 112, caption 2304, 32 x 32 x 32
latent, 300 caption tokens) split after block 7 as served, the DC-AE f32c32 decoder, Gemma-2-2B (300
tokens), CLIP ViT-L/14-336 (576 patches of a 1024 px image resized to 336 px) and Qwen2.5-0.5B on the
visual tokens of each verifier plus ~40 question tokens, with VHS's mlp2x_gelu connectors. A preset is
counted on the exact engine modules it serves (`vhs.engines`), fed as a request feeds them (the
exporter's example chain), with the token counts it serves (padded question included).

Every engine's FLOPs are compared as a proportion of the whole DiT (prefix + suffix) of one
candidate; the visual-token counts as a proportion of the DiT's tokens. The per-request FLOPs of
each mode follow from the mode table (`vhs/modes.py`): the text encoder once, the stages a mode runs
on every candidate N times, the winner's stages once.

    python -m vhs.benchmarks.flops shapes     # `make flops` (PRESET=proportions for that preset)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from diffusers import SanaTransformer2DModel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from vhs.dit_split import DiTPrefix, DiTSuffix
from vhs.engine_names import (
    CLIP_VISION,
    CONNECTOR,
    DIT_PREFIX,
    DIT_SUFFIX,
    LATENT_CONNECTOR,
    TEXT_ENCODER,
    VAE_DECODER,
)
from vhs.engines import VAEDecoder
from vhs.modes import MODES
from vhs.presets.sana_sprint import published_models_on_meta
from vhs.verifier import ClipVisualEncoder, LatentVisualEncoder, MLPConnector

# Published sizes at 1024 px (SANA-Sprint 1.6B, DC-AE f32c32, VHS's Qwen2.5-0.5B verifier).
PUBLISHED_TEXT_TOKENS = 300
PUBLISHED_QUESTION_TOKENS = 40  # the verifier question around the visual tokens (1064 with VHS's 1024)
PUBLISHED_SPLIT_BLOCK = 7
# The factor each preset's proportions must stay within (tests/test_shapes_preset.py,
# tests/test_proportions_preset.py); presets not named here are printed without a verdict.
TOLERANCES = {"shapes": 2.0, "proportions": 1.25}
# Rows a preset is not sized for, with the reason: printed, not checked.
NOT_SIZED_FOR = {
    # At 64 px the CLIP tower gives 64 patches, as many as the DiT's tokens (CLIP-336: 576 for the
    # DiT's 1024), so the CLIP verifier's LLM reads 1.8x the published share of visual tokens (3.1x
    # the FLOPs); the `proportions` preset keeps the published share.
    "shapes": {
        "clip_llm": "not sized for: 64 CLIP patches",
        # l* = 19 of 20, chosen on validation by quality per FLOP (vhs.benchmarks.block_choice).
        "dit_prefix": "l* = 19: chosen on validation",
        "dit_suffix": "l* = 19: chosen on validation",
        # Every shapes connector reads the prompt (29.7 MFLOP, 0.17 of this DiT; docs/training.md),
        # which the published connectors do not: the CLIP engine is its tower plus such a connector.
        "clip_vision": "not sized for: its connector reads the prompt",
    },
}
# Engines below this share of the published DiT (the connectors: 0.06-0.2 %) cannot move a
# request's time; their proportions are printed but not checked.
NEGLIGIBLE_SHARE = 0.01
REQUEST_CANDIDATES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Compute:
    """What one candidate costs: FLOPs of every engine (batch 1) and the visual tokens of each
    visual encoder (by engine name), with the DiT's own token count."""

    engine_flops: dict[str, float]
    visual_tokens: dict[str, int]
    dit_tokens: int

    @property
    def dit_flops(self) -> float:
        return self.engine_flops[DIT_PREFIX] + self.engine_flops[DIT_SUFFIX]


@dataclass(frozen=True)
class Proportion:
    """One row of the comparison: a quantity, published and preset, each relative to the DiT."""

    name: str
    published: float
    published_ratio: float
    preset: float
    preset_ratio: float
    note: str = ""  # why the row is not checked (negligible, or a row the preset is not sized for)

    @property
    def checked(self) -> bool:
        return not self.note

    @property
    def factor(self) -> float:
        return self.preset_ratio / self.published_ratio


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, which also counts attention on the CPU: torch 2.13 counts the CPU
    kernel of `scaled_dot_product_attention` as 0 (on the meta device it decomposes into counted
    matrix products), which would drop the attention of every transformer's real modules."""
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={cpu_attention: _cpu_sdpa_flops})


def _count(module: torch.nn.Module, inputs: dict) -> float:
    counter = flop_counter()
    with torch.no_grad(), counter:
        module(**inputs)
    return float(counter.get_total_flops())


def published_compute() -> Compute:
    """The published models on the meta device, counted as the served engines (batch 1)."""
    latent_size, dit_tokens = 32, 1024
    models = published_models_on_meta()
    transformer, vae, text_encoder, llm, clip_vision = (
        models[name] for name in ("transformer", "vae", "text_encoder", "llm", "clip_vision")
    )
    with torch.device("meta"):
        llm_width = llm.config.hidden_size
        encoders = {
            CONNECTOR: (MLPConnector(2240, llm_width), {"features": torch.zeros(1, dit_tokens, 2240)}),
            CLIP_VISION: (
                ClipVisualEncoder(clip_vision, MLPConnector(1024, llm_width, normalize_input=False)),
                {"images": torch.zeros(1, 3, 1024, 1024)},
            ),
            LATENT_CONNECTOR: (
                LatentVisualEncoder(MLPConnector(32, llm_width)),
                {"latents": torch.zeros(1, 32, latent_size, latent_size)},
            ),
        }
        flops = {
            TEXT_ENCODER: _count(
                text_encoder, {"input_ids": torch.zeros(1, PUBLISHED_TEXT_TOKENS, dtype=torch.long)}
            ),
            **_dit_flops(transformer, PUBLISHED_TEXT_TOKENS),
            VAE_DECODER: _count(
                VAEDecoder(vae), {"denoised_latents": torch.zeros(1, 32, latent_size, latent_size)}
            ),
            **{name: _count(module, inputs) for name, (module, inputs) in encoders.items()},
        }
        visual_tokens = {CONNECTOR: dit_tokens, CLIP_VISION: (336 // 14) ** 2, LATENT_CONNECTOR: dit_tokens}
        for mode in MODES.values():
            if mode.verifies:
                tokens = PUBLISHED_QUESTION_TOKENS + visual_tokens[mode.visual_encoder]
                flops[mode.llm] = _count(llm, {"inputs_embeds": torch.zeros(1, tokens, llm_width)})
    return Compute(flops, visual_tokens, dit_tokens)


def _dit_flops(
    transformer: SanaTransformer2DModel, text_tokens: int, split_block: int = PUBLISHED_SPLIT_BLOCK
) -> dict[str, float]:
    """FLOPs of the prefix (embeddings and blocks 0..split_block) and the suffix of one candidate."""
    config = transformer.config
    noise = torch.zeros(1, config.in_channels, config.sample_size, config.sample_size)
    timestep = torch.ones(1)
    prefix = DiTPrefix(transformer, split_block, 0.5)
    suffix = DiTSuffix(transformer, split_block, 0.5)
    prefix_inputs = (
        noise, torch.zeros(1, text_tokens, config.caption_channels), torch.ones(1, text_tokens), timestep,
        torch.ones(1),
    )  # fmt: skip
    counter = flop_counter()
    with torch.no_grad(), counter:
        prefix_outputs = prefix(*prefix_inputs)
    prefix_flops = float(counter.get_total_flops())
    counter = flop_counter()
    with torch.no_grad(), counter:
        suffix(*prefix_outputs, noise, timestep)
    return {DIT_PREFIX: prefix_flops, DIT_SUFFIX: float(counter.get_total_flops())}


def engine_flops_at_block(preset, split_block: int) -> dict[str, float]:
    """`engine_flops(preset)` with the DiT split after `split_block` instead of the preset's l*: the
    prefix and suffix recounted, every other engine as served."""
    per_row = engine_flops(preset)
    return {**per_row, **_dit_flops(preset.transformer, preset.config.text_max_length, split_block)}


def preset_compute(preset) -> Compute:
    """The served engines of a loaded preset (all modes), fed batch 1 as a request feeds them."""
    from vhs.engines import build_engines
    from vhs.export.graphs import ExampleChain

    engines = build_engines(preset)
    chain = ExampleChain(preset, batch=1)
    flops = {}
    for name, engine in engines.items():
        inputs = chain.inputs_for(name, engine, preset)
        counter = flop_counter()
        with counter:
            chain.record(name, engine, inputs)
        flops[name] = float(counter.get_total_flops())
    visual_tokens = {encoder: tokens.shape[1] for encoder, tokens in chain.visual_tokens.items()}
    return Compute(flops, visual_tokens, preset.transformer.config.sample_size**2)


def engine_flops(preset) -> dict[str, float]:
    """FLOPs of one row of every engine the preset serves (a candidate; the text encoder: the prompt)."""
    return preset_compute(preset).engine_flops


def request_flops(per_row: dict[str, float], mode: str, num_candidates: int) -> float:
    """FLOPs of one request in `mode` with N candidates: the FLOPs of one row of each engine times
    the rows the mode runs it on (`VerifierMode.engine_rows`)."""
    return sum(per_row[engine] * rows for engine, rows in MODES[mode].engine_rows(num_candidates).items())


def proportions(
    published: Compute, preset: Compute, not_sized_for: dict[str, str] | None = None
) -> list[Proportion]:
    """Every engine's FLOPs relative to the DiT of one candidate, then every visual encoder's token
    count relative to the DiT's tokens; published beside preset. Rows named in `not_sized_for`
    (name: reason, see NOT_SIZED_FOR) and negligible engines are left unchecked."""
    not_sized_for = not_sized_for or {}

    def note(name: str, published_ratio: float) -> str:
        if name in not_sized_for:
            return not_sized_for[name]
        return "" if published_ratio >= NEGLIGIBLE_SHARE else "negligible"

    rows = [
        Proportion(
            name,
            published.engine_flops[name],
            published.engine_flops[name] / published.dit_flops,
            preset.engine_flops[name],
            preset.engine_flops[name] / preset.dit_flops,
            note(name, published.engine_flops[name] / published.dit_flops),
        )
        for name in preset.engine_flops
    ]
    rows += [
        Proportion(
            f"{encoder} visual tokens",
            published.visual_tokens[encoder],
            published.visual_tokens[encoder] / published.dit_tokens,
            tokens,
            tokens / preset.dit_tokens,
            note(f"{encoder} visual tokens", 1.0),
        )
        for encoder, tokens in preset.visual_tokens.items()
    ]
    return rows


def proportion_table(rows: list[Proportion], preset_name: str) -> str:
    """Markdown: FLOPs in GFLOP (published) and MFLOP (preset), token counts as counts."""
    lines = [
        f"| engine | published | published / DiT | {preset_name} | {preset_name} / DiT | factor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        tokens = row.name.endswith("tokens")
        published = f"{row.published:,.0f}" if tokens else f"{row.published / 1e9:,.0f} GFLOP"
        preset = f"{row.preset:,.0f}" if tokens else f"{row.preset / 1e6:,.1f} MFLOP"
        factor = f"{row.factor:.2f}" if row.checked else f"({row.factor:.2f}, {row.note})"
        lines.append(
            f"| {row.name} | {published} | {row.published_ratio:.4f} | {preset} | {row.preset_ratio:.4f} "
            f"| {factor} |"
        )
    return "\n".join(lines)


def request_table(published: Compute, preset: Compute, preset_name: str) -> str:
    """Markdown: per-request FLOP ratios of VHS to each other mode, published and preset, by N."""
    others = [mode for mode in MODES if mode != "vhs"]
    header = " | ".join(f"vhs/{mode} published | vhs/{mode} {preset_name}" for mode in others)
    lines = [f"| N | {header} |", "| ---: |" + " ---: |" * (2 * len(others))]
    for n in REQUEST_CANDIDATES:
        cells = []
        for mode in others:
            for compute in (published, preset):
                flops = compute.engine_flops
                cells.append(f"{request_flops(flops, 'vhs', n) / request_flops(flops, mode, n):.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def within(rows: list[Proportion], tolerance: float) -> bool:
    """Whether every checked proportion is within `tolerance`x of the published one."""
    return all(1 / tolerance <= row.factor <= tolerance for row in rows if row.checked)


def main(argv: list[str] | None = None) -> int:
    from vhs.presets import load_preset

    preset_name = (argv if argv is not None else sys.argv[1:] or ["shapes"])[0]
    published = published_compute()
    preset = preset_compute(load_preset(preset_name))
    rows = proportions(published, preset, NOT_SIZED_FOR.get(preset_name))
    print(proportion_table(rows, preset_name))
    print()
    print(request_table(published, preset, preset_name))
    tolerance = TOLERANCES.get(preset_name)
    if tolerance is None:
        return 0
    verdict = within(rows, tolerance)
    print(f"every checked proportion within {tolerance:g}x of the published one: {verdict}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
