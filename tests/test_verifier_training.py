"""Verifier training: its data hold what the served path computes, its metrics measure selection,
its splits never meet, and trained weights score as the served scorer does."""

import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from vhs.engines import build_engines
from vhs.shapes import (
    detect_objects,
    evaluate,
    held_out_prompt_texts,
    object_map,
    parse_prompt,
    prompt_text,
    sample_training_prompt,
    validation_prompt_texts,
)
from vhs.train import nearby_questions, verifier_data
from vhs.train import verifier as verifier_training
from vhs.train.assemble_verifiers import ship_training_records
from vhs.train.verifier_metrics import auroc, best_of_n, within_prompt_auroc

CANDIDATES = 3
PROMPTS = 4


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A train and a validation split of PROMPTS prompts x CANDIDATES candidates of tiny-random."""
    folder = tmp_path_factory.mktemp("verifier_data")
    patch = pytest.MonkeyPatch()
    patch.setattr(verifier_data, "SHARD_PROMPTS", 2)
    patch.setattr(verifier_data, "BATCH_PROMPTS", 2)
    patch.setattr(verifier_data, "CANDIDATES", {"train": CANDIDATES, "validation": CANDIDATES})
    patch.setattr(verifier_data, "PROMPTS", {"train": PROMPTS, "validation": PROMPTS})
    generator = verifier_data.CandidateGenerator("tiny-random")
    for split in ("train", "validation"):
        for shard, path in enumerate(verifier_data.shard_paths(split, folder)):
            verifier_data.build_shard(generator, split, shard, path)
        verifier_data.data_card(split, folder)
    yield folder
    patch.undo()


@pytest.mark.slow  # generates candidates and trains
def test_the_dataset_holds_what_the_served_path_computes(tiny_data, tiny_preset, tiny_pipeline):
    shard = load_file(str(tiny_data / "train" / "shard_0000.safetensors"))
    prompts = verifier_data.split_prompts("train")[:2]
    engines = build_engines(tiny_preset)  # split at the preset's own l*
    split_block = tiny_preset.config.split_block
    for p, (spec, seed) in enumerate(prompts):
        served = tiny_pipeline(prompt_text(spec), CANDIDATES, seed, mode="none", return_candidates=True)
        rows = slice(p * CANDIDATES, (p + 1) * CANDIDATES)
        assert np.abs(shard["images"][rows].astype(int) - served.candidate_images.astype(int)).max() <= 1
        tokens = tiny_preset.prompt_tokenizer(prompt_text(spec))
        state = tiny_pipeline.best_of_n.initial_state(
            seed,
            list(range(CANDIDATES)),
            engines["text_encoder"](
                input_ids=torch.from_numpy(tokens.input_ids),
                attention_mask=torch.from_numpy(tokens.attention_mask),
            )["prompt_embeds"].detach(),
            tokens,
        )
        with torch.no_grad():
            hidden = engines["dit_prefix"](**{k: torch.as_tensor(v) for k, v in state.items()})[
                "hidden_states"
            ]
        stored = shard[f"hidden_states_l{split_block}"][rows].astype(np.float32)
        np.testing.assert_allclose(stored, hidden.numpy(), atol=2e-2, rtol=1e-2)  # stored in fp16
        verdicts = [evaluate(image, spec) for image in shard["images"][rows]]
        assert shard["passed"][rows].tolist() == verdicts
        maps = [object_map(detect_objects(image), 8) for image in shard["images"][rows]]
        np.testing.assert_array_equal(shard["object_map"][rows], maps)  # the 8 x 8 latent's grid


def test_validation_prompts_never_meet_training_or_evaluation_prompts():
    rng = np.random.default_rng(0)
    validation, evaluation = validation_prompt_texts(), held_out_prompt_texts()
    train = {prompt_text(sample_training_prompt(rng, "train")) for _ in range(3000)}
    assert train and not train & validation and not train & evaluation
    drawn = {prompt_text(sample_training_prompt(rng, "validation")) for _ in range(500)}
    assert drawn <= validation and not validation & evaluation
    assert {parse_prompt(text).tag for text in drawn} == {
        "two_object",
        "counting",
        "colors",
        "position",
        "color_attr",
    }
    with pytest.raises(ValueError, match="split"):
        sample_training_prompt(rng, "test")


def test_within_prompt_auroc_ignores_which_prompts_are_hard():
    # A score that knows which prompts are easy but not which candidate is right: prompt 3 (both
    # pass) high, prompt 2 (both fail) low, and no difference inside the mixed prompts 0 and 1.
    scores = np.array([0.9, 0.9, 0.1, 0.1, 0.05, 0.05, 0.95, 0.95])
    passed = np.array([1, 0, 1, 0, 0, 0, 1, 1])
    prompt_index = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert auroc(scores, passed) == 0.875
    assert within_prompt_auroc(scores, passed, prompt_index) == 0.5
    assert within_prompt_auroc(np.array([0.2, 0.7, 0.9]), np.array([1, 0, 1]), np.array([0, 0, 0])) == 0.5


def test_best_of_n_takes_the_highest_score_among_the_first_n():
    scores = np.array([[0.1, 0.9, 0.99], [0.8, 0.2, 0.3]])
    passed = np.array([[0, 1, 0], [0, 1, 1]])
    assert best_of_n(scores, passed, ["colors", "colors"], 2) == {"colors": 0.5, "overall": 0.5}
    assert best_of_n(scores, passed, ["colors", "colors"], 3)["overall"] == 0.0


@pytest.mark.slow  # generates candidates and trains
def test_trained_weights_score_as_the_served_scorer(tiny_data, tiny_preset, tmp_path, monkeypatch):
    monkeypatch.setattr(verifier_training, "PRIOR_STEPS", 3)
    monkeypatch.setattr(verifier_training, "ALIGN_STEPS", 3)
    monkeypatch.setattr(verifier_training, "FINETUNE_STEPS", 4)
    monkeypatch.setattr(verifier_training, "EVAL_EVERY", 2)
    reads = f"hidden_states_l{tiny_preset.config.split_block}"
    metrics = verifier_training.train_verifier(
        reads, tmp_path / "vhs", preset_name="tiny-random", data_dir=tiny_data, prior_dir=tmp_path / "prior"
    )
    assert metrics["validation"]["step"] in (2, 4)
    # Load the written weights the way a preset loads them and score through the served modules.
    from transformers import Qwen2ForCausalLM

    from vhs.verifier import MLPConnector, YesNoScorer

    connector = MLPConnector.from_pretrained(tmp_path / "vhs" / "connector")
    assert not torch.equal(connector.input_var, torch.ones_like(connector.input_var))  # statistics stored
    llm = Qwen2ForCausalLM.from_pretrained(tmp_path / "vhs" / "llm")
    tokenizer = tiny_preset.prompt_tokenizer
    scorer = YesNoScorer(llm, tokenizer.question_prefix_ids, tokenizer.yes_token_id, tokenizer.no_token_id)
    validation, record = verifier_data.load_split("validation", (reads, "passed", "prompt_index"), tiny_data)
    question = verifier_training.question_tensors(tiny_preset, [p["text"] for p in record["prompts"]])
    model = verifier_training.VerifierForTraining(connector, scorer).eval()
    scores = verifier_training.score(model, validation[reads], *question, validation["prompt_index"])
    with torch.no_grad():
        tokens = tokenizer(record["prompts"][0]["text"])
        _, served = scorer(
            connector(torch.from_numpy(validation[reads][:1]).float()),
            torch.from_numpy(tokens.question_ids),
            torch.from_numpy(tokens.question_length),
        )
    assert served.item() == pytest.approx(float(scores[0]), abs=1e-6)


@pytest.mark.slow  # generates candidates and trains
def test_a_prompt_reading_connector_trains_and_scores_as_served(
    tiny_data, tiny_preset, tmp_path, monkeypatch
):
    """The `shapes` recipe's connector reads the generator's prompt embedding: training feeds it the
    prompt the candidates are judged on, opens its blocks, and its scores are the served engines'."""
    from vhs.engine_names import TEXT_ENCODER
    from vhs.engines import build_engine, build_visual_encoder
    from vhs.modes import MODES
    from vhs.verifier import MLPConnector, YesNoScorer

    for name, steps in (("PRIOR_STEPS", 3), ("ALIGN_STEPS", 3), ("FINETUNE_STEPS", 4), ("EVAL_EVERY", 2)):
        monkeypatch.setattr(verifier_training, name, steps)
    paper_connector = verifier_training.visual_encoder_for

    def prompt_reading(preset, reads, clip_tower=None):
        connector = paper_connector(preset, reads)
        width = preset.text_encoder.config.hidden_size
        return MLPConnector(connector.config.in_features, connector.config.out_features, prompt_width=width)

    monkeypatch.setattr(verifier_training, "visual_encoder_for", prompt_reading)
    reads = f"hidden_states_l{tiny_preset.config.split_block}"
    verifier_training.train_verifier(
        reads, tmp_path / "vhs", preset_name="tiny-random", data_dir=tiny_data, prior_dir=tmp_path / "prior"
    )
    from transformers import Qwen2ForCausalLM

    connector = MLPConnector.from_pretrained(tmp_path / "vhs" / "connector").eval()
    assert connector.reads_prompt
    assert all(block.gate.item() != 0 for block in connector.film_blocks)  # stage 2 opened every block
    tokenizer = tiny_preset.prompt_tokenizer
    llm = Qwen2ForCausalLM.from_pretrained(tmp_path / "vhs" / "llm")
    scorer = YesNoScorer(llm, tokenizer.question_prefix_ids, tokenizer.yes_token_id, tokenizer.no_token_id)
    validation, record = verifier_data.load_split("validation", (reads, "passed", "prompt_index"), tiny_data)
    texts = [p["text"] for p in record["prompts"]]
    model = verifier_training.VerifierForTraining(connector, scorer).eval()
    scores = verifier_training.score(
        model, validation[reads], *verifier_training.question_tensors(tiny_preset, texts),
        validation["prompt_index"], verifier_training.prompt_tensors(tiny_preset, texts),
    )  # fmt: skip
    encoder = build_visual_encoder(SimpleNamespace(connector=connector), MODES["vhs"])
    text_encoder = build_engine(tiny_preset, TEXT_ENCODER)
    features = torch.from_numpy(validation[reads][:1]).float()
    with torch.no_grad():
        visual = {}
        for text in texts[:2]:
            tokens = tokenizer(text)
            embeds = text_encoder(
                input_ids=torch.from_numpy(tokens.input_ids),
                attention_mask=torch.from_numpy(tokens.attention_mask),
            )["prompt_embeds"]
            mask = torch.from_numpy(tokens.prompt_attention_mask)
            visual[text] = encoder(hidden_states=features, prompt_embeds=embeds, prompt_attention_mask=mask)
        first = tokenizer(texts[0])
        _, served = scorer(
            visual[texts[0]]["visual_tokens"],
            torch.from_numpy(first.question_ids),
            torch.from_numpy(first.question_length),
        )
    assert served.item() == pytest.approx(float(scores[0]), abs=1e-6)
    assert not torch.allclose(visual[texts[0]]["visual_tokens"], visual[texts[1]]["visual_tokens"])


def test_the_object_map_loss_trains_the_connector_and_leaves_the_served_weights_alone(
    tiny_data, tiny_preset, tmp_path, monkeypatch
):
    """With --object-map-weight, stages 1 and 2 also ask each visual token for its cell's object:
    the connector it writes differs from one trained without it, and is the served connector class
    (the map's head is dropped)."""
    monkeypatch.setattr(verifier_training, "PRIOR_STEPS", 3)
    monkeypatch.setattr(verifier_training, "ALIGN_STEPS", 3)
    monkeypatch.setattr(verifier_training, "FINETUNE_STEPS", 2)
    monkeypatch.setattr(verifier_training, "EVAL_EVERY", 2)
    reads = f"hidden_states_l{tiny_preset.config.split_block}"
    from vhs.verifier import MLPConnector

    connectors = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"weight_{weight}"
        metrics = verifier_training.train_verifier(
            reads, out, preset_name="tiny-random", data_dir=tiny_data, prior_dir=tmp_path / "prior",
            object_map_weight=weight,
        )  # fmt: skip
        assert metrics["object_map_weight"] == weight
        connectors[weight] = MLPConnector.from_pretrained(out / "connector").state_dict()
    assert connectors[0.0].keys() == connectors[1.0].keys()
    assert any(not torch.equal(connectors[0.0][k], connectors[1.0][k]) for k in connectors[0.0])


def test_nearby_questions_change_one_or_two_words_of_a_prompt_of_the_same_task():
    texts = [
        "a photo of three squares", "a photo of four squares", "a photo of two circles",
        "a photo of a red circle", "a photo of an orange circle", "a photo of a circle and a square",
        "a photo of a red circle left of a blue square", "a photo of a red circle right of a blue square",
    ]  # fmt: skip
    tags = ["counting"] * 3 + ["colors"] * 2 + ["two_object", "position", "position"]
    nearby = nearby_questions.nearby_texts(texts, tags)
    assert nearby["a photo of three squares"] == ["a photo of four squares", "a photo of two circles"]
    assert nearby["a photo of a red circle"] == ["a photo of an orange circle"]  # a colour and its article
    assert nearby["a photo of a circle and a square"] == []  # no other two-object text
    assert nearby["a photo of a red circle left of a blue square"] == [
        "a photo of a red circle right of a blue square"
    ]


@pytest.mark.slow  # generates candidates and trains
def test_nearby_questions_are_judged_by_the_evaluator_and_train_the_verifier(
    tiny_data, tiny_preset, tmp_path, monkeypatch
):
    summary = nearby_questions.build("train", tiny_data, workers=1)
    prompt_index, passed, questions = nearby_questions.load("train", tiny_data)
    assert 0 < summary["groups"] == len(questions) == len(prompt_index) == len(passed)
    shard = load_file(str(tiny_data / "train" / "shard_0000.safetensors"))
    record = verifier_data.load_split("train", ("passed",), tiny_data)[1]
    texts = [p["text"] for p in record["prompts"]]
    for group, question in enumerate(questions):
        assert question in texts and question != texts[prompt_index[group]]
        if prompt_index[group] < 2:  # the first shard's prompts
            rows = np.flatnonzero(shard["prompt_index"] == prompt_index[group])
            spec = parse_prompt(question)
            assert passed[group].tolist() == [evaluate(shard["images"][r], spec) for r in rows]
    monkeypatch.setattr(verifier_training, "PRIOR_STEPS", 2)
    monkeypatch.setattr(verifier_training, "ALIGN_STEPS", 2)
    monkeypatch.setattr(verifier_training, "FINETUNE_STEPS", 2)
    monkeypatch.setattr(verifier_training, "EVAL_EVERY", 2)
    metrics = verifier_training.train_verifier(
        f"hidden_states_l{tiny_preset.config.split_block}", tmp_path / "vhs", preset_name="tiny-random",
        data_dir=tiny_data, prior_dir=tmp_path / "prior", nearby_questions=True,
    )  # fmt: skip
    mixed = passed.any(axis=1) & ~passed.all(axis=1)
    assert metrics["nearby_questions_with_passing_and_failing_candidates"] == int(mixed.sum())


def test_the_object_map_head_refuses_a_map_of_another_grid():
    head = verifier_training.ObjectMapHead(width=16)
    with pytest.raises(ValueError, match="token grid"):
        head(torch.zeros(2, 64, 16), torch.zeros(2, 16, dtype=torch.uint8))
    # Cells with an object weigh half: a head that knows only "empty" still pays for every object.
    maps = torch.zeros(2, 64, dtype=torch.uint8)
    maps[:, 5] = 3
    with torch.no_grad():
        head.classify.weight.zero_()
        head.classify.bias.fill_(-10.0)
        head.classify.bias[0] = 10.0  # always "empty"
    assert head(torch.zeros(2, 64, 16), maps).item() == pytest.approx(0.5 * 20, rel=1e-3)


@pytest.mark.slow  # generates candidates and trains
def test_training_runs_under_torchrun_with_equal_replicas(tiny_data, tiny_preset, tmp_path):
    """Two processes (DDP over gloo) train a few steps of every stage; the script checks that both
    replicas hold the same parameters at the end and fails otherwise."""
    reads = f"hidden_states_l{tiny_preset.config.split_block}"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()), "-m", "vhs.train.verifier", "--reads", reads,
        "--out", str(tmp_path / "vhs"), "--preset", "tiny-random", "--data-dir", str(tiny_data),
        "--prior-dir", str(tmp_path / "prior"), "--steps", "2", "2", "3", "--eval-every", "3",
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads((tmp_path / "vhs" / "metrics.json").read_text())["validation"]["step"] == 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # generates candidates and trains
def test_the_prior_only_command_trains_the_prior_a_verifier_starts_from(tiny_data, tmp_path, monkeypatch):
    """`make train-verifier` trains the shared language prior once (`--prior-only`) before the
    verifiers that start from it: the same weights as the prior a verifier trains for itself."""
    command = [
        sys.executable, "-m", "vhs.train.verifier", "--prior-only", "--preset", "tiny-random",
        "--data-dir", str(tiny_data), "--prior-dir", str(tmp_path / "alone"), "--steps", "3", "1", "1",
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not (tmp_path / "vhs").exists()  # the prior only
    monkeypatch.setattr(verifier_training, "PRIOR_STEPS", 3)
    monkeypatch.setattr(verifier_training, "ALIGN_STEPS", 1)
    monkeypatch.setattr(verifier_training, "FINETUNE_STEPS", 1)
    verifier_training.train_verifier(
        "denoised_latents", tmp_path / "vhs", preset_name="tiny-random", data_dir=tiny_data,
        prior_dir=tmp_path / "within",
    )  # fmt: skip
    alone = load_file(tmp_path / "alone" / "model.safetensors")
    within = load_file(tmp_path / "within" / "model.safetensors")
    assert alone.keys() == within.keys()
    assert all(np.array_equal(alone[name], within[name]) for name in alone)


@pytest.mark.slow  # builds the seeded untrained shapes preset (~10 s)
def test_shapes_verifiers_train_from_the_seeded_start_not_from_the_shipped_weights(tmp_path, monkeypatch):
    """A retraining must not continue the verifiers the preset ships (its own last output): every
    component a verifier starts from is the seeded one of the untrained preset."""
    from vhs.presets import load_preset
    from vhs.presets.shapes_builder import build_untrained_shapes

    monkeypatch.chdir(tmp_path)  # the untrained preset is cached under ./build/train
    shipped = load_preset("shapes")
    start = verifier_training.starting_verifier(shipped)
    seeded = build_untrained_shapes()
    for name in ("llm", "connector", "latent_connector", "clip_connector", "clip_vision"):
        weights = [getattr(preset, name).state_dict() for preset in (start, seeded, shipped)]
        assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0]), name
        assert not all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0]), name


def test_the_shipped_records_hold_every_verifiers_metrics_the_data_cards_and_every_study(tmp_path):
    verifiers, data, out = tmp_path / "verifiers", tmp_path / "data", tmp_path / "out"
    for folder in ("vhs_l19", "latent", "clip", "clip_tower", "vhs_l7"):
        (verifiers / folder).mkdir(parents=True)
        (verifiers / folder / "metrics.json").write_text("{}")
    for name in ("study.md", "study.json", "study_recipe.md", "study_recipe.json", "scaling_1600.json"):
        (verifiers / name).write_text("{}")
    (data / "train").mkdir(parents=True)
    (data / "train" / "data_card.json").write_text("{}")
    written = ship_training_records(verifiers, data, out)
    assert sorted(written) == sorted(
        f"training/{name}"
        for name in (
            "vhs_l19_metrics.json", "latent_metrics.json", "clip_metrics.json", "clip_tower_metrics.json",
            "study.md", "study.json", "study_recipe.md", "study_recipe.json", "scaling_1600.json",
            "data_card_train.json",
        )
    )  # fmt: skip
    assert all((out / name).is_file() for name in written)


def test_a_study_subset_is_the_first_whole_shards_of_the_split(tmp_path):
    every = verifier_data.shard_paths("train", tmp_path)
    assert verifier_data.shard_paths("train", tmp_path, 250) == every[:3]  # 100 prompts per shard
    assert verifier_data.shard_paths("train", tmp_path, 10**9) == every


def test_the_paper_connector_of_the_study_is_the_prompt_reading_one_without_its_blocks():
    """`--no-connector-reads-prompt` (the study's comparison) trains the same seeded layers without
    the blocks that read the prompt; wrapped connectors (AE latent) are replaced in place."""
    from vhs.verifier import LatentVisualEncoder, MLPConnector

    torch.manual_seed(0)
    reading = MLPConnector(8, 16, prompt_width=4)
    paper = verifier_training.without_prompt(reading)
    assert not paper.reads_prompt and not hasattr(paper, "film_blocks")
    for name, tensor in paper.state_dict().items():
        torch.testing.assert_close(tensor, reading.state_dict()[name])
    latent = verifier_training.without_prompt(LatentVisualEncoder(reading))
    assert latent.connector.state_dict().keys() == paper.state_dict().keys()
    assert verifier_training.without_prompt(paper) is paper
