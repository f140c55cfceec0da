"""The `proportions` benchmark preset: built in code with the published classes, SANA-Sprint's depth
and split, and every compute proportion within 1.25x of the published models at 1024 px."""

import pytest
from diffusers import AutoencoderDC, SanaTransformer2DModel
from transformers import CLIPVisionModel, Gemma2Model, Qwen2ForCausalLM

from vhs.benchmarks.flops import (
    PUBLISHED_SPLIT_BLOCK,
    TOLERANCES,
    preset_compute,
    proportion_table,
    proportions,
    published_compute,
    request_flops,
    within,
)


@pytest.fixture(scope="module")
def proportions_preset(built_proportions):
    from vhs.presets import load_preset

    return load_preset("proportions")


@pytest.fixture(scope="module")
def computes(proportions_preset):
    return published_compute(), preset_compute(proportions_preset)


def test_proportions_preset_has_the_published_classes_depth_and_split(proportions_preset):
    assert isinstance(proportions_preset.text_encoder, Gemma2Model)
    assert isinstance(proportions_preset.transformer, SanaTransformer2DModel)
    assert isinstance(proportions_preset.vae, AutoencoderDC)
    for llm in ("llm", "clip_llm", "latent_llm"):
        assert isinstance(getattr(proportions_preset, llm), Qwen2ForCausalLM)
    assert isinstance(proportions_preset.clip_vision, CLIPVisionModel)
    assert len(proportions_preset.transformer.transformer_blocks) == 20
    assert proportions_preset.config.split_block == PUBLISHED_SPLIT_BLOCK


def test_every_proportion_is_within_1_25x_of_the_published_models(computes):
    rows = proportions(*computes)
    names = {row.name for row in rows if row.checked}
    # The DiT's split, the decoder, text encoder, tower, every verifier's LLM and visual tokens.
    assert {"dit_prefix", "vae_decoder", "text_encoder", "clip_vision", "llm", "clip_llm"} <= names
    assert {"connector visual tokens", "clip_vision visual tokens"} <= names
    assert within(rows, TOLERANCES["proportions"]), proportion_table(rows, "proportions")


def test_request_flop_ratios_follow_the_published_ones(computes):
    published, preset = (compute.engine_flops for compute in computes)
    for n in (1, 4, 8):
        for baseline in ("clip", "latent", "none"):
            published_ratio = request_flops(published, "vhs", n) / request_flops(published, baseline, n)
            preset_ratio = request_flops(preset, "vhs", n) / request_flops(preset, baseline, n)
            assert preset_ratio == pytest.approx(published_ratio, rel=0.05), (n, baseline)


def test_a_proportion_outside_the_tolerance_fails_the_check():
    from vhs.benchmarks.flops import Proportion

    inside = Proportion("vae_decoder", 8e12, 2.8, 5e9, 2.8 * 1.2, "")
    outside = Proportion("llm", 8e11, 0.29, 5e8, 0.29 * 1.3, "")
    unchecked = Proportion("connector", 6e9, 0.002, 1e7, 0.002 * 5, "negligible")
    assert within([inside, unchecked], 1.25)
    assert not within([inside, outside, unchecked], 1.25)
    assert not within([Proportion("text_encoder", 1.0, 0.4, 1.0, 0.4 / 1.3)], 1.25)
