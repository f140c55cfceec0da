"""Per-candidate compute of each component, published SANA-Sprint + VHS models vs the `shapes` preset.

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on one forward pass of batch 1.
The published models are instantiated on the meta device from their configs (no weights needed):
SANA-Sprint 1.6B transformer (20 blocks, 70 heads x 32, cross 20 x 112, caption 2304, 32 x 32 x 32
latent, 300 caption tokens), the DC-AE f32c32 decoder, Gemma-2-2B (300 tokens), CLIP ViT-L/14-336
and Qwen2.5-0.5B on ~1064 tokens. The `shapes` preset is counted on its real modules with the token
counts it serves: its own text length, 64 visual tokens plus the verifier question.

    python benchmarks/flops.py        # prints the table (`make flops`)
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, CLIPVisionModel, Gemma2Config, Gemma2Model, Qwen2Config, Qwen2Model

# Published component sizes at 1024 px (SANA-Sprint 1.6B, DC-AE f32c32, VHS's Qwen2.5-0.5B verifier).
PUBLISHED_TEXT_TOKENS = 300
PUBLISHED_LLM_TOKENS = 1064  # question + 576 CLIP-336 visual tokens, as in the notes' table
COMPONENTS = ("dit", "vae_decoder", "text_encoder", "llm", "clip_vision")
# Published proportions to DiT (docs/onnx-export.md); each preset ratio must be within 2x of these.
TOLERANCE = 2.0


def published_components() -> dict:
    """The published models on the meta device, with their batch-1 example inputs."""
    with torch.device("meta"):
        transformer = SanaTransformer2DModel(
            in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32, num_layers=20,
            num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
            caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1, guidance_embeds=True,
            qk_norm="rms_norm_across_heads",
        )  # fmt: skip
        vae = AutoencoderDC(
            in_channels=3, latent_channels=32, attention_head_dim=32,
            encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
            decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
            encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
            encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
            decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
            upsample_block_type="interpolate", downsample_block_type="Conv",
            decoder_norm_types="rms_norm", decoder_act_fns="silu",
        )  # fmt: skip
        text_encoder = Gemma2Model(
            Gemma2Config(
                vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256,
            )
        )  # fmt: skip
        clip_vision = CLIPVisionModel(
            CLIPVisionConfig(
                image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                num_hidden_layers=24, num_attention_heads=16,
            )
        )  # fmt: skip
        llm = Qwen2Model(
            Qwen2Config(
                vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2,
            )
        )  # fmt: skip
    return _with_inputs(
        transformer, vae, text_encoder, clip_vision, llm, PUBLISHED_TEXT_TOKENS, PUBLISHED_LLM_TOKENS, "meta"
    )


def preset_components(preset) -> dict:
    """A loaded preset's modules with the inputs one candidate of a request gives them."""
    tokens = preset.prompt_tokenizer
    llm_tokens = len(tokens.question_prefix_ids) + preset.transformer.config.sample_size**2
    llm_tokens += preset.config.question_max_length
    return _with_inputs(
        preset.transformer, preset.vae, preset.text_encoder, preset.clip_vision, preset.llm.model,
        preset.config.text_max_length, llm_tokens, "cpu",
    )  # fmt: skip


def _with_inputs(transformer, vae, text_encoder, clip_vision, llm, text_tokens, llm_tokens, device) -> dict:
    config = transformer.config
    size, channels = config.sample_size, config.in_channels
    image_size = clip_vision.config.image_size
    zeros = {"device": device}
    return {
        "dit": (
            transformer,
            {
                "hidden_states": torch.zeros(1, channels, size, size, **zeros),
                "encoder_hidden_states": torch.zeros(1, text_tokens, config.caption_channels, **zeros),
                "timestep": torch.ones(1, **zeros),
                "guidance": torch.ones(1, **zeros),
            },
        ),
        "vae_decoder": (
            vae.decoder,
            {"hidden_states": torch.zeros(1, vae.config.latent_channels, size, size, **zeros)},
        ),
        "text_encoder": (text_encoder, {"input_ids": torch.zeros(1, text_tokens, dtype=torch.long, **zeros)}),
        "llm": (llm, {"inputs_embeds": torch.zeros(1, llm_tokens, llm.config.hidden_size, **zeros)}),
        "clip_vision": (clip_vision, {"pixel_values": torch.zeros(1, 3, image_size, image_size, **zeros)}),
    }


def count_flops(components: dict) -> dict[str, float]:
    """FLOPs of one batch-1 forward pass of each component."""
    flops = {}
    for name, (module, inputs) in components.items():
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(**inputs)
        flops[name] = float(counter.get_total_flops())
    return flops


def engine_flops(preset) -> dict[str, float]:
    """FLOPs of one row of every engine the preset serves (a candidate; the text encoder: the prompt),
    counted on the modules the graphs are exported from, with the exporter's example inputs."""
    from export.graphs import example_inputs
    from vhs.engines import build_engines

    engines = build_engines(preset)
    inputs = example_inputs(preset, engines, batch=1)
    return count_flops({name: (engine, inputs[name]) for name, engine in engines.items()})


def request_flops(per_row: dict[str, float], mode: str, num_candidates: int) -> float:
    """FLOPs of one request: every engine of `mode` times the rows it runs (`VerifierMode.engine_rows`)."""
    from vhs.modes import MODES

    return sum(per_row[engine] * rows for engine, rows in MODES[mode].engine_rows(num_candidates).items())


def flop_table(preset_name: str = "shapes") -> tuple[str, bool]:
    """(markdown table of per-candidate GFLOP and ratios to the DiT, whether every ratio is within 2x)."""
    from vhs.presets import load_preset

    published = count_flops(published_components())
    ours = count_flops(preset_components(load_preset(preset_name)))
    lines = [
        f"| component | published GFLOP | published / DiT | {preset_name} MFLOP | {preset_name} / DiT "
        "| factor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    all_within = True
    for name in COMPONENTS:
        published_ratio = published[name] / published["dit"]
        our_ratio = ours[name] / ours["dit"]
        factor = our_ratio / published_ratio
        all_within &= 1 / TOLERANCE <= factor <= TOLERANCE
        lines.append(
            f"| {name} | {published[name] / 1e9:,.0f} | {published_ratio:.3f} | {ours[name] / 1e6:,.1f} "
            f"| {our_ratio:.3f} | {factor:.2f} |"
        )
    return "\n".join(lines), all_within


def main() -> None:
    import sys

    table, all_within = flop_table(sys.argv[1] if len(sys.argv) > 1 else "shapes")
    print(table)
    print(f"every ratio within {TOLERANCE:g}x of the published one: {all_within}")


if __name__ == "__main__":
    main()
