import numpy as np
import pytest
import torch
from diffusers import SanaSprintPipeline

from vhs.dit_split import DiTPrefix, DiTSuffix
from vhs.engines import VAEDecoder
from vhs.noise import candidate_noise

PROMPT = "a photo of a red circle"


def sana_sprint_pipeline(preset):
    return SanaSprintPipeline(
        tokenizer=preset.tokenizer,
        text_encoder=preset.text_encoder,
        vae=preset.vae,
        transformer=preset.transformer,
        scheduler=preset.scheduler,
    ).to("cpu")


def run_split(preset, split_block, noise, prompt_embeds, prompt_mask):
    sigma_data = preset.scheduler.config.sigma_data
    batch = noise.shape[0]
    timestep = torch.full((batch,), preset.config.max_timesteps)
    guidance = torch.full((batch,), preset.config.guidance_scale)
    prefix = DiTPrefix(preset.transformer, split_block, sigma_data)
    suffix = DiTSuffix(preset.transformer, split_block, sigma_data)
    with torch.no_grad():
        carried = prefix(noise, prompt_embeds, prompt_mask, timestep, guidance)
        return suffix(*carried, noise, timestep)


def sana_sprint_one_step(preset, noise, output_type):
    """diffusers' own single-step SanaSprintPipeline on `noise`; returns (output, prompt_embeds, mask)."""
    pipe = sana_sprint_pipeline(preset)
    with torch.no_grad():
        prompt_embeds, prompt_mask = pipe.encode_prompt(
            [PROMPT] * noise.shape[0],
            device="cpu",
            max_sequence_length=preset.config.text_max_length,
            complex_human_instruction=None,
        )
        output = pipe(
            prompt_embeds=prompt_embeds,
            prompt_attention_mask=prompt_mask,
            latents=noise.clone(),
            num_inference_steps=1,
            intermediate_timesteps=None,
            guidance_scale=preset.config.guidance_scale,
            output_type=output_type,
            height=32,
            width=32,
            use_resolution_binning=False,
        ).images
    return output, prompt_embeds, prompt_mask


@pytest.mark.slow  # the full diffusers pipeline per case
@pytest.mark.parametrize("split_block", [0, 7, 18, 19])
@pytest.mark.parametrize("batch", [1, 4])
def test_suffix_of_prefix_equals_sana_sprint_pipeline(tiny_preset, split_block, batch):
    """The split DiT plus its built-in sCM maths reproduces diffusers' SanaSprintPipeline latent."""
    noise = torch.from_numpy(candidate_noise(3, range(batch), tiny_preset.latent_shape))
    expected, prompt_embeds, prompt_mask = sana_sprint_one_step(tiny_preset, noise, "latent")
    actual = run_split(tiny_preset, split_block, noise, prompt_embeds, prompt_mask)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_split_then_decode_equals_pipeline_image(tiny_preset):
    noise = torch.from_numpy(candidate_noise(0, range(2), tiny_preset.latent_shape))
    expected, prompt_embeds, prompt_mask = sana_sprint_one_step(tiny_preset, noise, "np")
    with torch.no_grad():
        latents = run_split(tiny_preset, 7, noise, prompt_embeds, prompt_mask)
        actual = VAEDecoder(tiny_preset.vae)(latents).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_reference_pipeline_prompt_encoding_matches_sana_sprint(tiny_preset, tiny_pipeline):
    """Our tokenizer + text encoder engine equal SanaSprintPipeline.encode_prompt (raw prompt)."""
    pipe = sana_sprint_pipeline(tiny_preset)
    tokens = tiny_pipeline.prompt_tokenizer("A Photo of a Red Circle ")
    with torch.no_grad():
        expected, expected_mask = pipe.encode_prompt(
            "A Photo of a Red Circle ",
            device="cpu",
            max_sequence_length=tiny_preset.config.text_max_length,
            complex_human_instruction=None,
        )
        actual = tiny_pipeline.engines["text_encoder"](
            input_ids=torch.from_numpy(tokens.input_ids),
            attention_mask=torch.from_numpy(tokens.attention_mask),
        )["prompt_embeds"]
    np.testing.assert_array_equal(tokens.attention_mask, expected_mask.numpy())
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("split_block", [-1, 20, 7.0])
def test_split_block_out_of_range_raises(tiny_preset, split_block):
    with pytest.raises(ValueError, match="split_block"):
        DiTPrefix(tiny_preset.transformer, split_block, 0.5)
    with pytest.raises(ValueError, match="split_block"):
        DiTSuffix(tiny_preset.transformer, split_block, 0.5)


def test_export_friendly_cross_attention_equals_diffusers():
    """The broadcast-mask processor swapped in for export computes what SanaAttnProcessor2_0 computes."""
    from vhs.export_friendly import use_export_friendly_attention
    from vhs.presets.tiny_random import build_tiny_random

    preset = build_tiny_random()  # a fresh transformer with diffusers' own processors
    noise = torch.from_numpy(candidate_noise(1, range(3), preset.latent_shape))
    prompt_embeds = torch.randn(3, 32, 32)
    prompt_mask = torch.ones(3, 32, dtype=torch.long)
    prompt_mask[:, 9:] = 0
    original = run_split(preset, 7, noise, prompt_embeds, prompt_mask)
    use_export_friendly_attention(preset.transformer)
    swapped = run_split(preset, 7, noise, prompt_embeds, prompt_mask)
    torch.testing.assert_close(swapped, original, rtol=1e-6, atol=1e-6)
