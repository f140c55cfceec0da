"""`vhs-convert` on tiny fake checkpoints in exactly the authors' released layout (LLaVA-style
`llava_qwen` config, `model.mm_projector.{0,2}.*` beside the Qwen2 weights, statistics as pickled
bf16 tensors) gives the same P(yes) as an independent LLaVA-style forward written here: projected
tokens spliced in at the image token of the chat-templated question."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vhs.convert.authors import main as convert_main
from vhs.pipeline import VHSPipeline
from vhs.presets import load_preset, preset_folder
from vhs.presets.builder import build_clip_vision, build_llm
from vhs.presets.tiny_random import CORPUS, SIZES
from vhs.presets.tokenizers import build_qwen2_tokenizer

# The published question, written out here independently of the library.
QUESTION = (
    "You are an AI assistant specializing in image analysis and ranking. Your task is to analyze and "
    "compare image based on how well they match the given prompt. <image> The given prompt is: {}. "
    "Please consider the prompt and the image to make a decision and response directly with 'yes' or 'no'"
)
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id for <image>
PROMPT = "a photo of a red circle left of a blue square"
DIT_WIDTH = SIZES.dit_heads * SIZES.dit_head_dim


def save_authors_checkpoint(folder, mm_hidden_size, tie_word_embeddings=True, seed=5):
    """A LLaVA-style checkpoint as released: one safetensors file, llava_qwen config, tokenizer."""
    torch.manual_seed(seed)
    tokenizer = build_qwen2_tokenizer(CORPUS * 20, vocab_size=SIZES.vocab_size)
    llm = build_llm(SIZES, tokenizer)
    llm.config.tie_word_embeddings = tie_word_embeddings
    config = llm.config.to_dict()
    del config["rope_parameters"]  # the released configs predate transformers 5: rope_theta at the top
    config.update(
        model_type="llava_qwen",
        architectures=["LlavaQwenForCausalLM"],
        rope_theta=1000000.0,
        mm_projector_type="mlp2x_gelu",
        mm_hidden_size=mm_hidden_size,
        mm_vision_select_layer=-2,
        image_aspect_ratio="pad",
        tokenizer_model_max_length=2048,
        use_mm_proj=True,
    )
    llm.config.rope_parameters["rope_theta"] = 1000000.0
    llm = type(llm)(llm.config)  # rebuilt so its rotary tables use the checkpoint's rope_theta
    width = SIZES.llm_width
    projector = {
        "model.mm_projector.0.weight": torch.randn(width, mm_hidden_size) * 0.5,
        "model.mm_projector.0.bias": torch.randn(width) * 0.1,
        "model.mm_projector.2.weight": torch.randn(width, width) * 0.5,
        "model.mm_projector.2.bias": torch.randn(width) * 0.1,
    }
    folder.mkdir(parents=True)
    save_weights(folder, llm, projector)
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    return llm.eval(), tokenizer, projector


def save_weights(folder, llm, projector):
    # Tied embeddings: save_pretrained writes no lm_head.weight, neither does this.
    tied = llm.config.tie_word_embeddings
    weights = {k: v for k, v in llm.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(weights | projector, folder / "model.safetensors", metadata={"format": "pt"})


def make_candidate_0_answer_yes(folder, llm, tokenizer, projector, features):
    """Point the (untied) "yes" row of lm_head along candidate 0's answer state, off the mean: then
    candidate 0 answers "yes" and the candidates opposite it cannot, so both branches of the
    authors' rule are taken. Re-saves the checkpoint's weights."""
    with torch.no_grad():
        hidden = llava_answer_hidden(llm, tokenizer, projector, features, PROMPT)
        direction = hidden[0] - hidden.mean(dim=0)
        yes = tokenizer.encode("yes", add_special_tokens=False)[0]
        llm.lm_head.weight[yes] = 12 * direction / direction.norm()
    save_weights(folder, llm, projector)


def llava_answer_logits(llm, tokenizer, projector, features, prompt):
    """The logits of the answer token (B, V)."""
    return llm.lm_head(llava_answer_hidden(llm, tokenizer, projector, features, prompt))


def llava_answer_hidden(llm, tokenizer, projector, features, prompt):
    """LLaVA's forward: projector on the features, spliced at <image>; the answer's last hidden state."""
    visual = F.linear(F.gelu(F.linear(features, *_linear(projector, 0))), *_linear(projector, 2))
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION.format(prompt)}], tokenize=False, add_generation_prompt=True
    )
    before, after = chat.split("<image>")
    input_ids = tokenizer(before).input_ids + [IMAGE_TOKEN_INDEX] + tokenizer(after).input_ids
    at = input_ids.index(IMAGE_TOKEN_INDEX)
    embed = llm.get_input_embeddings()
    text = embed(torch.tensor([i for i in input_ids if i != IMAGE_TOKEN_INDEX]))
    rows = [torch.cat([text[:at], row, text[at:]]) for row in visual]
    return torch.stack([llm.model(inputs_embeds=row.unsqueeze(0)).last_hidden_state[0, -1] for row in rows])


def llava_scores(llm, tokenizer, projector, features, prompt):
    """(P(yes) over the yes/no logits, the authors' score: the answer token's text contains "yes" ?
    p(yes) : -p(no), over the whole vocabulary)."""
    logits = llava_answer_logits(llm, tokenizer, projector, features, prompt)
    yes, no = (tokenizer.encode(word, add_special_tokens=False)[0] for word in ("yes", "no"))
    yes_no = torch.softmax(logits[:, [yes, no]], dim=-1)[:, 0]
    vocabulary = torch.softmax(logits, dim=-1)
    answers = [tokenizer.decode([token]) for token in logits.argmax(dim=-1).tolist()]
    authors = torch.stack(
        [
            vocabulary[row, yes] if "yes" in answer else -vocabulary[row, no]
            for row, answer in enumerate(answers)
        ]
    )
    return yes_no, authors


def _linear(projector, index):
    return projector[f"model.mm_projector.{index}.weight"], projector[f"model.mm_projector.{index}.bias"]


def preset_with_verifier(folder, verifier, **settings_changes):
    """tiny-random's generator with the converted verifier."""
    settings = json.loads((preset_folder("tiny-random") / "preset.json").read_text())
    del settings["modes"]
    settings.update(generator_path=str(preset_folder("tiny-random")), verifier_path=str(verifier))
    settings.update(settings_changes)
    (folder / "preset.json").write_text(json.dumps(settings))
    return load_preset(folder)


@pytest.mark.slow  # converts and runs two checkpoints
def test_converted_hidden_state_verifier_equals_llava_forward(tmp_path):
    checkpoint = tmp_path / "vhs-hidden-verifier"
    llm, tokenizer, projector = save_authors_checkpoint(checkpoint, DIT_WIDTH, tie_word_embeddings=False)
    mean, variance = (torch.randn(DIT_WIDTH) * 0.5).bfloat16(), (torch.rand(DIT_WIDTH) + 0.5).bfloat16()
    hidden_states = torch.randn(6, 64, DIT_WIDTH)
    normalized = (hidden_states - mean.float()) / torch.sqrt(variance.float() + 1e-6)
    make_candidate_0_answer_yes(checkpoint, llm, tokenizer, projector, normalized)
    torch.save(mean, tmp_path / "block_7_mean_bf16.pt")
    torch.save(variance, tmp_path / "block_7_variance_bf16.pt")
    argv = ["--checkpoint", str(tmp_path / "vhs-hidden-verifier"), "--output", str(tmp_path / "verifier")]
    statistics = ["--mean", str(tmp_path / "block_7_mean_bf16.pt")]
    statistics += ["--variance", str(tmp_path / "block_7_variance_bf16.pt")]
    assert convert_main(argv + statistics) == 0
    assert not list((tmp_path / "verifier").rglob("*.pt")) and not list(
        (tmp_path / "verifier").rglob("*.bin")
    )

    with torch.no_grad():
        yes_no, authors = llava_scores(llm, tokenizer, projector, normalized, PROMPT)
    assert len(set(yes_no.tolist())) == 6, "the candidates must get distinct scores for the check to bite"
    assert (authors > 0).any() and (authors < 0).any(), "both of the authors' branches are exercised"
    for score_rule, expected in (("yes_no_softmax", yes_no), ("answer_token", authors)):
        preset = preset_with_verifier(tmp_path, tmp_path / "verifier", score_rule=score_rule)
        assert preset.config.modes == ("vhs", "none")
        assert preset.llm.config.rope_parameters["rope_theta"] == 1000000.0
        pipeline = VHSPipeline(preset)
        tokens = pipeline.prompt_tokenizer(PROMPT)
        with torch.no_grad():
            visual_tokens = pipeline.engines["connector"](hidden_states=hidden_states)["visual_tokens"]
            ours = pipeline.engines["llm"](
                visual_tokens=visual_tokens,
                question_ids=torch.from_numpy(tokens.question_ids[[0] * 6]),
                question_length=torch.from_numpy(tokens.question_length[[0] * 6]),
            )["yes_probability"]
        # Two float32 forwards that sum in different orders (left-padded batch vs one sequence, and
        # the thread count): they agree to ~1e-5 relative, far below any difference between candidates.
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
        assert pipeline(PROMPT, 2, 0, "vhs").scores.shape == (2,)


@pytest.mark.slow  # converts and runs two checkpoints
def test_both_checkpoints_convert_into_one_folder_each_with_its_own_llm(tmp_path):
    """The CLIP baseline converted next to the hidden-state verifier: one folder serves both modes,
    and the clip mode scores with the CLIP checkpoint's LLM."""
    save_authors_checkpoint(tmp_path / "vhs-hidden-verifier", DIT_WIDTH, seed=6)
    for statistic in ("mean", "variance"):
        torch.save(torch.ones(DIT_WIDTH).bfloat16(), tmp_path / f"{statistic}.pt")
    argv = ["--checkpoint", str(tmp_path / "vhs-hidden-verifier"), "--output", str(tmp_path / "verifier")]
    assert (
        convert_main(
            argv + ["--mean", str(tmp_path / "mean.pt"), "--variance", str(tmp_path / "variance.pt")]
        )
        == 0
    )
    llm, tokenizer, projector = save_authors_checkpoint(tmp_path / "vhs-mllm-clip-verifier", SIZES.clip_width)
    build_clip_vision(SIZES).save_pretrained(tmp_path / "clip-vit")
    argv = ["--checkpoint", str(tmp_path / "vhs-mllm-clip-verifier"), "--output", str(tmp_path / "verifier")]
    assert convert_main(argv + ["--clip-vision", str(tmp_path / "clip-vit")]) == 0

    preset = preset_with_verifier(tmp_path, tmp_path / "verifier")
    assert preset.config.modes == ("vhs", "clip", "none")
    pipeline = VHSPipeline(preset)
    images = torch.rand(2, 3, 32, 32)
    tokens = pipeline.prompt_tokenizer(PROMPT)
    with torch.no_grad():
        ours = pipeline.engines["clip_llm"](
            visual_tokens=pipeline.engines["clip_vision"](images=images)["visual_tokens"],
            question_ids=torch.from_numpy(tokens.question_ids[[0, 0]]),
            question_length=torch.from_numpy(tokens.question_length[[0, 0]]),
        )["yes_probability"]
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        tower = preset.clip_vision
        # The authors' images are 8-bit PIL images (CLIPImageProcessor at the tower's size: no resize).
        pixels = (images * 255).round() / 255
        patches = tower(pixel_values=(pixels - mean) / std, output_hidden_states=True).hidden_states[-2][
            :, 1:
        ]
        theirs, _ = llava_scores(llm, tokenizer, projector, patches, PROMPT)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


class Payload:
    """Stands for arbitrary code in a pickle."""


def test_statistics_that_are_not_plain_tensors_are_refused(tmp_path):
    save_authors_checkpoint(tmp_path / "checkpoint", DIT_WIDTH)
    torch.save({"mean": Payload()}, tmp_path / "mean.pt")  # only full unpickling could rebuild it
    torch.save(torch.zeros(DIT_WIDTH + 1), tmp_path / "variance.pt")
    argv = ["--checkpoint", str(tmp_path / "checkpoint"), "--output", str(tmp_path / "out")]
    assert (
        convert_main(
            argv + ["--mean", str(tmp_path / "mean.pt"), "--variance", str(tmp_path / "variance.pt")]
        )
        == 2
    )
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_the_llava_projector_is_refused(tmp_path, capsys):
    save_authors_checkpoint(tmp_path / "checkpoint", DIT_WIDTH)
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    config["mm_projector_type"] = "linear"
    (tmp_path / "checkpoint" / "config.json").write_text(json.dumps(config))
    assert (
        convert_main(["--checkpoint", str(tmp_path / "checkpoint"), "--output", str(tmp_path / "out")]) == 2
    )
    assert "mm_projector_type must be 'mlp2x_gelu', got 'linear'" in capsys.readouterr().err
