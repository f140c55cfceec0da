import numpy as np
import pytest
import torch

from vhs.presets import load_preset
from vhs.prompting import IMAGE_PLACEHOLDER, VERIFIER_QUESTION
from vhs.verifier import MLPConnector, YesNoScorer


def test_connector_normalises_with_its_statistics():
    connector = MLPConnector(3, 5)
    connector.input_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    connector.input_var.copy_(torch.tensor([4.0, 9.0, 16.0]))
    features = torch.randn(2, 7, 3)
    normalised = (features - connector.input_mean) / torch.sqrt(connector.input_var + 1e-6)
    expected = connector.linear_2(torch.nn.functional.gelu(connector.linear_1(normalised)))
    torch.testing.assert_close(connector(features), expected)


def test_connector_statistics_survive_save_and_load(tmp_path):
    connector = MLPConnector(3, 5)
    connector.input_var.fill_(7.0)
    connector.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = MLPConnector.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.input_var, torch.full((3,), 7.0))


def test_scorer_reads_the_yes_no_logits_of_the_full_llm_at_the_last_real_token(tiny_preset):
    """Right padding of the question must not change the answer: compare with an unpadded full forward."""
    tokens = tiny_preset.prompt_tokenizer
    scorer = YesNoScorer(tiny_preset.llm, tokens.question_prefix_ids, tokens.yes_token_id, tokens.no_token_id)
    prompts = ["a photo of a red circle", "a photo of three yellow diamonds left of a cat"]
    visual_tokens = torch.randn(2, 5, tiny_preset.llm.config.hidden_size)
    encoded = [tokens(p) for p in prompts]
    question_ids = torch.from_numpy(np.concatenate([e.question_ids for e in encoded]))
    question_length = torch.from_numpy(np.concatenate([e.question_length for e in encoded]))
    assert question_length[0] != question_length[1]
    with torch.no_grad():
        logits, p_yes = scorer(visual_tokens, question_ids, question_length)
        for row, enc in enumerate(encoded):
            embed = tiny_preset.llm.get_input_embeddings()
            real = torch.from_numpy(enc.question_ids[0, : enc.question_length[0]])
            inputs_embeds = torch.cat(
                [embed(torch.tensor(tokens.question_prefix_ids)), visual_tokens[row], embed(real)]
            )[None]
            full = tiny_preset.llm(inputs_embeds=inputs_embeds).logits[0, -1]
            expected = full[[tokens.yes_token_id, tokens.no_token_id]]
            torch.testing.assert_close(logits[row], expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(p_yes[row], torch.softmax(expected, -1)[0])


@pytest.mark.parametrize("prompt", ["a photo of a dog", "two cats left of a red square, on grass"])
def test_question_before_the_image_does_not_depend_on_the_prompt(tiny_preset, prompt):
    """The llm graph bakes in the tokens before <image>: for any prompt, the rendered question must
    start with exactly those tokens and continue with the ones the tokenizer sends."""
    tokens = tiny_preset.prompt_tokenizer
    chat = tokens.llm_tokenizer.apply_chat_template(
        [{"role": "user", "content": VERIFIER_QUESTION.replace("{prompt}", prompt)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    before, after = chat.split(IMAGE_PLACEHOLDER)
    assert tokens.llm_tokenizer(before, add_special_tokens=False).input_ids == tokens.question_prefix_ids
    encoded = tokens(prompt)
    sent = encoded.question_ids[0, : encoded.question_length[0]].tolist()
    assert tokens.llm_tokenizer(after, add_special_tokens=False).input_ids == sent
    assert prompt in tokens.llm_tokenizer.decode(sent)


def test_tiny_random_preset_reloads_identically(tmp_path, tiny_preset):
    tiny_preset.save_pretrained(tmp_path)
    reloaded = load_preset(tmp_path)
    for name in (
        "text_encoder",
        "transformer",
        "vae",
        "llm",
        "clip_llm",
        "latent_llm",
        "connector",
        "clip_vision",
        "clip_connector",
        "latent_connector",
    ):
        original, copy = getattr(tiny_preset, name).state_dict(), getattr(reloaded, name).state_dict()
        assert original.keys() == copy.keys()
        for key in original:
            torch.testing.assert_close(copy[key], original[key], rtol=0, atol=0)
    assert reloaded.config == tiny_preset.config
    assert reloaded.tokenizer("a red circle").input_ids == tiny_preset.tokenizer("a red circle").input_ids


def prompt_inputs(batch: int, real_tokens: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds (B, 6, 4), prompt_attention_mask (B, 6)) with `real_tokens[i]` real tokens in row i."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, 6, 4, generator=generator)
    mask = (torch.arange(6)[None] < torch.tensor(real_tokens)[:, None]).long()
    return embeds, mask


def test_prompt_reading_connector_starts_as_the_paper_connector_then_reads_the_prompt():
    torch.manual_seed(0)
    connector = MLPConnector(3, 8, prompt_width=4, prompt_blocks=2, film_width=5).eval()
    features = torch.randn(2, 9, 3)  # a 3 x 3 token grid
    embeds, mask = prompt_inputs(2, [6, 3])
    with torch.no_grad():
        # Gates at 0: the blocks change nothing, training starts from the paper's connector.
        torch.testing.assert_close(connector(features, embeds, mask), connector(features))
        for block in connector.film_blocks:
            block.gate.fill_(1.0)
        read = connector(features, embeds, mask)
        assert not torch.allclose(read, connector(features))
        # Another prompt gives other tokens; what lies past the mask does not matter.
        other_embeds, _ = prompt_inputs(2, [6, 3], seed=1)
        assert not torch.allclose(connector(features, other_embeds, mask)[0], read[0])
        padded = embeds.clone()
        padded[1, 3:] = 100.0
        torch.testing.assert_close(connector(features, padded, mask), read)


def test_prompt_reading_connector_needs_a_square_token_grid():
    connector = MLPConnector(3, 8, prompt_width=4)
    with pytest.raises(ValueError, match="square token grid"):
        connector(torch.randn(1, 6, 3), *prompt_inputs(1, [6]))


@pytest.mark.parametrize("mode_name", ["vhs", "latent"])
@pytest.mark.parametrize("prompt_width", [0, 4])
def test_visual_encoder_engine_takes_the_dit_prompt_inputs_when_its_connector_reads_them(
    mode_name, prompt_width
):
    from types import SimpleNamespace

    from vhs.engines import PROMPT_INPUTS, build_visual_encoder
    from vhs.modes import MODES

    mode = MODES[mode_name]
    connector = MLPConnector(8, 8, prompt_width=prompt_width)
    engine = build_visual_encoder(SimpleNamespace(**{mode.encoder_components[0].folder: connector}), mode)
    expected = (mode.encoder_input, *(PROMPT_INPUTS if prompt_width else ()))
    assert engine.input_names == expected
    rows = {"hidden_states": torch.randn(2, 16, 8), "denoised_latents": torch.randn(2, 8, 4, 4)}
    embeds, mask = prompt_inputs(2, [6, 2])
    tokens = engine(prompt_embeds=embeds, prompt_attention_mask=mask, **rows)["visual_tokens"]
    assert tokens.shape == (2, 16, 8)
