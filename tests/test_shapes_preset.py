"""The shipped `shapes` preset: loads, has the published classes and depth, runs through the
reference pipeline and through diffusers' own SanaSprintPipeline, and keeps the FLOP proportions."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel
from transformers import CLIPVisionModel, Gemma2Model, Qwen2ForCausalLM

from vhs.dit_split import DiTPrefix, DiTSuffix
from vhs.noise import candidate_noise

PROMPT = "a photo of a red circle and a blue square"


@pytest.fixture(scope="module")
def shapes_preset():
    from vhs.presets import load_preset

    return load_preset("shapes")


def test_shapes_preset_has_the_published_classes_and_depth(shapes_preset):
    assert isinstance(shapes_preset.text_encoder, Gemma2Model)
    assert isinstance(shapes_preset.transformer, SanaTransformer2DModel)
    assert isinstance(shapes_preset.vae, AutoencoderDC)
    assert isinstance(shapes_preset.llm, Qwen2ForCausalLM)
    assert isinstance(shapes_preset.clip_vision, CLIPVisionModel)
    assert len(shapes_preset.transformer.transformer_blocks) == 20
    assert shapes_preset.transformer.config.guidance_embeds
    assert shapes_preset.config.split_block == 19  # chosen on validation (docs/training.md)


def test_shapes_pipeline_generates_64px_images_that_depend_on_the_seed(shapes_preset):
    from vhs.pipeline import VHSPipeline

    pipeline = VHSPipeline(shapes_preset)
    first = pipeline(PROMPT, num_candidates=2, seed=0, mode="none").image
    second = pipeline(PROMPT, num_candidates=2, seed=1, mode="none").image
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)


@pytest.mark.slow  # the shapes preset in diffusers / counted FLOPs
def test_shapes_preset_runs_unchanged_in_sana_sprint_pipeline(shapes_preset):
    """One step of diffusers' SanaSprintPipeline gives the latent of the served split."""
    preset = shapes_preset
    pipe = SanaSprintPipeline(
        tokenizer=preset.tokenizer,
        text_encoder=preset.text_encoder,
        vae=preset.vae,
        transformer=preset.transformer,
        scheduler=preset.scheduler,
    )
    noise = torch.from_numpy(candidate_noise(0, range(2), preset.latent_shape))
    with torch.no_grad():
        prompt_embeds, prompt_mask = pipe.encode_prompt(
            [PROMPT] * 2, device="cpu", max_sequence_length=preset.config.text_max_length,
            complex_human_instruction=None,
        )  # fmt: skip
        expected = pipe(
            prompt_embeds=prompt_embeds, prompt_attention_mask=prompt_mask, latents=noise.clone(),
            num_inference_steps=1, intermediate_timesteps=None, guidance_scale=preset.config.guidance_scale,
            output_type="latent", height=64, width=64, use_resolution_binning=False,
        ).images  # fmt: skip
        sigma_data = preset.scheduler.config.sigma_data
        timestep = torch.full((2,), preset.config.max_timesteps)
        guidance = torch.full((2,), preset.config.guidance_scale)
        prefix = DiTPrefix(preset.transformer, preset.config.split_block, sigma_data)
        suffix = DiTSuffix(preset.transformer, preset.config.split_block, sigma_data)
        actual = suffix(*prefix(noise, prompt_embeds, prompt_mask, timestep, guidance), noise, timestep)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # the shapes preset in diffusers / counted FLOPs
def test_shapes_flop_proportions_are_within_2x_of_the_published_models(shapes_preset):
    from vhs.benchmarks.flops import (
        NOT_SIZED_FOR,
        TOLERANCES,
        preset_compute,
        proportion_table,
        proportions,
        published_compute,
        within,
    )

    rows = proportions(published_compute(), preset_compute(shapes_preset), NOT_SIZED_FOR["shapes"])
    # Every row but the CLIP verifier's LLM, the DiT's split at l* = 19, the CLIP engine whose
    # connector reads the prompt (see NOT_SIZED_FOR; the whole DiT is the unit of every share) and
    # the connectors (negligible in the published models).
    assert sorted(row.name for row in rows if not row.checked) == [
        "clip_llm",
        "clip_vision",
        "connector",
        "dit_prefix",
        "dit_suffix",
        "latent_connector",
    ]
    assert within(rows, TOLERANCES["shapes"]), proportion_table(rows, "shapes")
