"""The pieces the training stages share: data, tokenization, checkpoints, the denoiser and the teacher ODE."""

import numpy as np
import pytest
import torch

from vhs.shapes import held_out_prompt_texts
from vhs.train.common import (
    DenoiserX0,
    load_checkpoint,
    sample_ode,
    save_checkpoint,
    tokenize_prompts,
    training_batch,
)
from vhs.train.distill import pseudo_huber


def test_training_batch_is_seeded_and_never_an_evaluation_prompt():
    prompts, images = training_batch(np.random.default_rng(0), 64)
    again, same_images = training_batch(np.random.default_rng(0), 64)
    assert prompts == again and torch.equal(images, same_images)
    assert images.shape == (64, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert not set(prompts) & held_out_prompt_texts()


def test_training_tokenization_equals_the_serving_tokenization(tiny_preset):
    prompt = "A photo of a red circle "
    served = tiny_preset.prompt_tokenizer(prompt)
    input_ids, attention_mask = tokenize_prompts(
        tiny_preset.tokenizer, [prompt], tiny_preset.config.text_max_length
    )
    np.testing.assert_array_equal(input_ids.numpy(), served.input_ids)
    np.testing.assert_array_equal(attention_mask.numpy(), served.attention_mask)


def test_training_refuses_a_prompt_that_serving_refuses(tiny_preset):
    """Serving rejects a prompt over the text encoder's token limit; training must not truncate it."""
    prompt = "circle " * 40
    limit = tiny_preset.config.text_max_length
    with pytest.raises(ValueError, match=f"tokens long; the limit is {limit}"):
        tiny_preset.prompt_tokenizer(prompt)
    with pytest.raises(ValueError, match=f"tokens long; the limit is {limit}"):
        tokenize_prompts(tiny_preset.tokenizer, [prompt], limit)


def test_one_step_ode_is_the_served_single_step(tiny_preset, tiny_pipeline):
    """A one-step teacher ODE without guidance is one DiT call at t = pi/2: the served generator."""
    from vhs.engine_names import DIT_PREFIX, DIT_SUFFIX

    denoiser = DenoiserX0(tiny_preset)
    input_ids, mask = tokenize_prompts(tiny_preset.tokenizer, ["a photo of a red circle"] * 2, 32)
    with torch.no_grad():
        embeds = tiny_preset.text_encoder(input_ids, attention_mask=mask).last_hidden_state
        noise = torch.randn(2, *tiny_preset.latent_shape, generator=torch.Generator().manual_seed(0))
        ode = sample_ode(denoiser, noise, embeds, mask, embeds[:1], mask[:1], num_steps=1, cfg_scale=1.0)
        timestep = torch.full((2,), np.pi / 2)
        prefix = tiny_pipeline.engines[DIT_PREFIX](
            noise=noise, prompt_embeds=embeds, prompt_attention_mask=mask, timestep=timestep,
            guidance=torch.full((2,), tiny_preset.config.guidance_scale),
        )  # fmt: skip
        served = tiny_pipeline.engines[DIT_SUFFIX](**prefix, noise=noise, timestep=timestep)
        hidden, latents = denoiser.with_hidden_state(noise, timestep, embeds, mask)
    torch.testing.assert_close(ode, served["denoised_latents"], rtol=1e-4, atol=1e-5)
    # What the readable-student study reads: the served prefix's hidden state, beside the same z_0.
    torch.testing.assert_close(hidden, prefix["hidden_states"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(latents, served["denoised_latents"], rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "checkpoint.pt", 17, {"model": model}, optimizer)
    expected_draw = torch.rand(3)

    restored = torch.nn.Linear(3, 2)
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    assert load_checkpoint(tmp_path / "checkpoint.pt", {"model": restored}, restored_optimizer) == 17
    torch.testing.assert_close(restored.weight, model.weight)
    assert restored_optimizer.state_dict()["state"][0]["step"] == 1
    torch.testing.assert_close(torch.rand(3), expected_draw)
    assert load_checkpoint(tmp_path / "missing.pt", {"model": restored}, restored_optimizer) == 0


def test_teacher_schedule_warms_up_decays_and_restarts_each_cycle():
    from vhs.train import teacher

    start = 0
    for steps, peak, warmup_steps in teacher.cycles:
        rates = [teacher.learning_rate(step) for step in range(start, start + steps)]
        assert rates[0] < peak / 2 and max(rates) == pytest.approx(peak)
        decay = rates[warmup_steps:]
        assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
        assert rates[-1] == pytest.approx(teacher.min_learning_rate, rel=1e-3)
        start += steps
    assert start == teacher.max_steps
    with pytest.raises(ValueError, match="past the last cycle"):
        teacher.learning_rate(teacher.max_steps)


@pytest.mark.parametrize(
    ("time_sampling", "share_above_1", "share_below_0_2"),
    [("uniform", 0.368, 0.116), ("logit_normal", 0.49, 0.05)],
)
def test_teacher_times_follow_the_chosen_density(monkeypatch, time_sampling, share_above_1, share_below_0_2):
    from vhs.train import teacher

    monkeypatch.setattr(teacher, "time_sampling", time_sampling)
    t = teacher.sample_times(200_000, torch.Generator().manual_seed(0))
    assert t.min() >= teacher.t_min and t.max() <= np.pi / 2
    assert (t > 1).float().mean().item() == pytest.approx(share_above_1, abs=0.01)
    assert (t < 0.2).float().mean().item() == pytest.approx(share_below_0_2, abs=0.01)


def test_teacher_refuses_an_unknown_time_density(monkeypatch):
    from vhs.train import teacher

    monkeypatch.setattr(teacher, "time_sampling", "logitnormal")
    with pytest.raises(ValueError, match="time_sampling"):
        teacher.sample_times(4, torch.Generator().manual_seed(0))


def test_pseudo_huber_reads_as_rms_error_and_gives_each_pair_an_equal_pull():
    target = torch.zeros(4, 8, 8, 8)
    assert pseudo_huber(target, target).item() == 0.0
    assert pseudo_huber(torch.full_like(target, 0.5), target).item() == pytest.approx(0.5, abs=1e-3)
    # One pair 20x further off than the others: under MSE it would pull 20x harder, here as hard.
    prediction = torch.full_like(target, 0.1)
    prediction[0] = 2.0
    prediction.requires_grad_(True)
    pseudo_huber(prediction, target).backward()
    pull = prediction.grad.flatten(1).norm(dim=1)
    assert pull[0].item() == pytest.approx(pull[1].item(), rel=1e-3)
