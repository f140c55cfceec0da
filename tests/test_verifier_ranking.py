"""The pieces of the verifier recipe that make it rank: the within-prompt losses, the statistics that
say whether a Best-of-N gain is more than noise, and the splits that make validation able to choose."""

import json

import numpy as np
import pytest
import torch

from vhs.shapes import TASKS
from vhs.shapes.prompt_sets import MIN_VALIDATION_GROUPS, _split, _verifier_split
from vhs.train.verifier import ranking_loss
from vhs.train.verifier_metrics import (
    best_of_n,
    best_of_n_gain,
    chosen_verdicts,
    overall_difference,
    task_scores,
    within_prompt_auroc,
    within_prompt_auroc_difference,
    within_prompt_auroc_standard_error,
)
from vhs.train.verifier_study import format_study


@pytest.mark.parametrize("kind", ["pairwise", "listwise"])
def test_ranking_loss_is_lower_when_passing_candidates_rank_first(kind):
    passed = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]])
    right = torch.tensor([[2.0, -1.0, -2.0, 1.0], [-1.0, 3.0, 0.0, -2.0]])
    assert ranking_loss(right, passed, kind) < ranking_loss(-right, passed, kind)


@pytest.mark.parametrize("kind", ["pairwise", "listwise"])
def test_ranking_loss_ignores_which_prompts_are_hard(kind):
    """Adding a constant to every candidate of a prompt (the prompt's difficulty) changes nothing,
    and prompts whose candidates all pass or all fail add nothing."""
    margins = torch.tensor([[0.5, -0.3, 1.2], [0.1, 0.4, -0.2]])
    passed = torch.tensor([[1, 0, 1], [0, 1, 0]])
    shifted = margins + torch.tensor([[5.0], [-7.0]])
    assert ranking_loss(shifted, passed, kind).item() == pytest.approx(
        ranking_loss(margins, passed, kind).item()
    )
    with_uniform_prompts = torch.cat([margins, torch.tensor([[9.0, -9.0, 0.0], [1.0, 2.0, 3.0]])])
    uniform_verdicts = torch.cat([passed, torch.tensor([[1, 1, 1], [0, 0, 0]])])
    assert ranking_loss(with_uniform_prompts, uniform_verdicts, kind).item() == pytest.approx(
        ranking_loss(margins, passed, kind).item()
    )


def test_pairwise_loss_is_the_mean_logistic_loss_over_pairs():
    margins = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    passed = torch.tensor([[1, 0, 0]])
    expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-2.0))) / 2
    loss = ranking_loss(margins, passed, "pairwise")
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert margins.grad[0, 0] < 0  # pushes the passing candidate up


def test_ranking_loss_of_a_batch_without_order_is_zero_and_differentiable():
    margins = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = ranking_loss(margins, torch.tensor([[1, 1]]), "pairwise")
    loss.backward()
    assert loss.item() == 0 and margins.grad is not None


def test_overall_difference_has_the_paired_standard_error_of_the_task_means():
    rng = np.random.default_rng(0)
    tags = ["colors"] * 50 + ["counting"] * 30
    first, second = rng.integers(0, 2, 80).astype(float), rng.integers(0, 2, 80).astype(float)
    difference, se = overall_difference(first, second, tags)
    d = first - second
    colors, counting = d[:50], d[50:]
    assert difference == pytest.approx((colors.mean() + counting.mean()) / 2)
    assert se == pytest.approx(np.sqrt(colors.var(ddof=1) / 50 + counting.var(ddof=1) / 30) / 2)
    assert overall_difference(first, first, tags) == (0.0, 0.0)


def test_auroc_standard_error_shrinks_with_more_prompts():
    rng = np.random.default_rng(0)

    def sample(prompts):
        labels = rng.integers(0, 2, (prompts, 8))
        scores = labels + rng.normal(0, 1.5, labels.shape)
        return scores.ravel(), labels.ravel(), np.repeat(np.arange(prompts), 8)

    small, large = sample(50), sample(800)
    assert within_prompt_auroc_standard_error(*large) < within_prompt_auroc_standard_error(*small) / 2
    assert 0.6 < within_prompt_auroc(*large) < 0.9


def test_paired_auroc_difference_is_the_difference_with_a_smaller_error():
    """Two verifiers that share most of their scores: the paired SE of their difference is far below
    either AUROC's own bootstrap SE, and the difference is exactly that of the two AUROCs."""
    rng = np.random.default_rng(0)
    prompt_index, labels = np.repeat(np.arange(200), 8), rng.random(1600) < 0.4
    first = labels + rng.normal(0, 1.5, 1600)
    second = first + rng.normal(0, 0.3, 1600)
    difference, se = within_prompt_auroc_difference(first, second, labels, prompt_index)
    expected = within_prompt_auroc(first, labels, prompt_index) - within_prompt_auroc(
        second, labels, prompt_index
    )
    assert difference == pytest.approx(expected)
    assert 0 < se < within_prompt_auroc_standard_error(first, labels, prompt_index) / 2
    assert within_prompt_auroc_difference(first, first, labels, prompt_index) == (0.0, 0.0)


def test_chosen_verdicts_take_the_first_highest_score():
    scores = np.array([[0.2, 0.9, 0.9], [0.5, 0.1, 0.7]])
    labels = np.array([[0, 1, 0], [1, 0, 0]])
    assert chosen_verdicts(scores, labels, 3).tolist() == [1.0, 0.0]
    assert chosen_verdicts(scores, labels, 2).tolist() == [1.0, 1.0]


def test_best_of_n_gain_is_best_of_n_minus_the_first_candidate():
    rng = np.random.default_rng(0)
    scores, passed = rng.random((40, 4)), rng.random((40, 4)) < 0.4
    tags = [TASKS[i % 3] for i in range(40)]
    gain, se = best_of_n_gain(scores, passed, tags, 4)
    expected = (
        best_of_n(scores, passed, tags, 4)["overall"]
        - task_scores(passed[:, 0].astype(float), tags)["overall"]
    )
    assert gain == pytest.approx(expected)
    assert se > 0
    assert best_of_n_gain(scores, passed, tags, 1) == (0.0, 0.0)


@pytest.mark.parametrize("tag", TASKS)
def test_validation_holds_enough_groups_to_choose(tag):
    training_groups = len(_split(tag)[1])
    validation, train = _verifier_split(tag)
    if training_groups >= 2 * MIN_VALIDATION_GROUPS:
        assert len(validation) >= MIN_VALIDATION_GROUPS and len(train) >= MIN_VALIDATION_GROUPS
    assert len(validation) + len(train) == training_groups


def test_prompt_attributes_tell_apart_prompts_that_share_their_words():
    from vhs.train.readability import prompt_attributes

    first = prompt_attributes("a photo of a red circle and a green square")
    swapped = prompt_attributes("a photo of a green circle and a red square")
    assert first.shape == swapped.shape and not np.array_equal(first, swapped)
    left = prompt_attributes("a photo of a circle left of a square")
    right = prompt_attributes("a photo of a circle right of a square")
    assert not np.array_equal(left, right)


def test_probe_tokens_keep_every_pixel_and_latent():
    from vhs.train.readability import PATCH, as_tokens

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    tokens = as_tokens(images)
    assert tokens.shape == (2, (64 // PATCH) ** 2, PATCH * PATCH * 3)
    assert tokens[1, 0, :3].tolist() == (images[1, 0, 0] / 255).astype(np.float32).tolist()
    latents = np.random.default_rng(0).normal(size=(2, 8, 4, 4)).astype(np.float16)
    assert torch.equal(as_tokens(latents)[0, 5], torch.from_numpy(latents[0, :, 1, 1]).float())


def test_conv_probe_grids_put_every_token_in_its_cell():
    from vhs.train.readability import as_grid

    hidden = np.random.default_rng(0).normal(size=(2, 64, 5)).astype(np.float16)
    grid = as_grid(hidden)
    assert grid.shape == (2, 5, 8, 8)
    assert torch.equal(grid[1, :, 2, 3], torch.from_numpy(hidden[1, 2 * 8 + 3]).float())  # token 19
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert torch.equal(as_grid(images)[1, :, 4, 7], torch.from_numpy(images[1, 4, 7] / 255).float())
    latents = np.random.default_rng(0).normal(size=(2, 8, 4, 4)).astype(np.float16)
    assert torch.equal(as_grid(latents), torch.from_numpy(latents).float())


def test_conv_probe_ranks_by_what_the_prompt_asks(monkeypatch):
    """Every candidate shows a blob in one of two channels; it passes when the blob is in the
    channel its prompt names. A reader that ignores the prompt ranks at chance."""
    from vhs.train import readability

    monkeypatch.setattr(readability, "CONV_STEPS", 20)
    rng = np.random.default_rng(0)
    prompts, per_prompt = 96, 16
    asked = rng.integers(2, size=prompts)
    shown = rng.integers(2, size=(prompts, per_prompt))
    grids = rng.normal(scale=0.3, size=(prompts, per_prompt, 8, 8, 2)).astype(np.float16)
    cells = rng.integers(8, size=(prompts, per_prompt, 2))
    for p in range(prompts):
        for k in range(per_prompt):
            row, column = cells[p, k]
            grids[p, k, row, column, shown[p, k]] += 3
    features = grids.reshape(prompts * per_prompt, 64, 2)  # (N, tokens, channels), as hidden states
    attributes = torch.from_numpy(np.eye(2, dtype=np.float32)[np.repeat(asked, per_prompt)])
    passed = (shown == asked[:, None]).ravel().astype(np.uint8)
    train, held_out = slice(0, 64 * per_prompt), slice(64 * per_prompt, None)
    probe = readability.train_conv_probe(
        features[train], attributes[train], torch.from_numpy(passed[train]), per_prompt
    )
    with torch.no_grad():
        scores = probe(readability.as_grid(features[held_out]), attributes[held_out]).numpy()
    prompt_index = np.repeat(np.arange(prompts - 64), per_prompt)
    assert within_prompt_auroc(scores, passed[held_out], prompt_index) > 0.9


def test_study_rows_name_what_differs_from_the_shipped_verifier_and_by_how_much():
    row = {
        "reads": "hidden_states_l19", "loss": "pairwise", "clip_tower": None, "alignment_trains": "connector",
        "fine_tuning_lr": 5e-4, "fine_tuning_batch": "16 prompts x 8 candidates",
        "reader": "2 layers x 64, 2/1 heads", "train_seconds": 600, "shipped": "vhs_l19",
        "steps": {"prior": 300, "alignment": 100, "fine_tuning": 900}, "within_prompt_auroc_all": 0.68,
        "within_prompt_auroc": 0.68, "within_prompt_auroc_se": 0.02,
        "best_of_4_minus_best_of_1": 0.08, "best_of_4_minus_best_of_1_se": 0.015,
        "within_prompt_auroc_all_by_task": {"counting": 0.75, "position": 0.55},
    }  # fmt: skip
    variant = {
        **row, "fine_tuning_batch": "8 prompts x 16 candidates", "nearby_questions": 4000,
        "minus_shipped": {"within_prompt_auroc_all": (0.012, 0.004), "best_of_4": (-0.003, 0.01)},
        "within_prompt_auroc_all_by_task": {"counting": 0.7, "position": 0.6},
    }  # fmt: skip
    table = format_study({"split": "validation", "verifiers": {"vhs_l19": row, "wide": variant},
                          "readability": {}})  # fmt: skip
    reference_line, variant_line = table.splitlines()[2:4]
    assert "batch" not in reference_line and "±" not in reference_line.split("|")[8]
    assert "batch 8 prompts x 16 candidates" in variant_line and "reader" not in variant_line
    assert "nearby questions" in variant_line and "nearby" not in reference_line
    assert "+0.012 ± 0.004, -0.003 ± 0.010" in variant_line
    # ... and where each ranks, task by task
    assert "| verifier | counting | position |" in table
    assert "| wide | 0.700 | 0.600 |" in table


def test_readability_runs_made_apart_fill_one_row_per_representation(tmp_path):
    from vhs.train.verifier_study import merged_readability

    def summary(auroc):
        return {"within_prompt_auroc": auroc, "within_prompt_auroc_se": 0.02,
                "best_of_4_minus_best_of_1": 0.05, "best_of_4_minus_best_of_1_se": 0.015}  # fmt: skip

    full = {"hidden_states_l7": {"train_candidates": 100, "probe": summary(0.62),
                                 "ceiling": {**summary(0.5), "verdict_agreement": 0.75}},
            "images": {"train_candidates": 100, "probe": summary(0.58)}}  # fmt: skip
    conv = {"hidden_states_l7": {"train_candidates": 100, "conv_probe": summary(0.66)}}
    (tmp_path / "readability.json").write_text(json.dumps(full))
    (tmp_path / "readability_conv.json").write_text(json.dumps(conv))
    readability = merged_readability(tmp_path)
    assert list(readability) == ["hidden_states_l7", "images"]  # in the study's order
    assert set(readability["hidden_states_l7"]) == {"train_candidates", "probe", "ceiling", "conv_probe"}
    table = format_study({"split": "validation", "verifiers": {}, "readability": readability})
    h7 = next(line for line in table.splitlines() if line.startswith("| hidden_states_l7 |"))
    assert "0.660 ± 0.020" in h7 and "0.500 ± 0.020" in h7 and h7.endswith("| 0.750 |")
    images = next(line for line in table.splitlines() if line.startswith("| images |"))
    assert images.endswith("| - | - | (oracle) | (oracle) | 1 |")


def test_a_release_is_compared_with_the_previous_table_paired_over_the_same_prompts():
    from vhs.train.evaluate_verifiers import against_previous, format_tables

    tags = ["colors", "colors", "counting", "counting"]

    def table(vhs_chosen: list[str], split: str = "evaluation") -> dict:
        return {
            "split": split, "prompts": 4, "candidates_per_prompt": 2, "prompt_tags": tags,
            "best_of_1": {"overall": 0.5}, "oracle_best_of_n": {1: 0.5, 2: 0.75}, "comparisons": {},
            "verifiers": {"vhs": {
                "chosen_verdicts": vhs_chosen, "best_of_n": {}, "best_of_n_minus_best_of_1": {},
                "within_prompt_auroc_of_4": 0.5, "within_prompt_auroc_of_4_se": 0.1, "auroc": 0.5,
            }},
        }  # fmt: skip

    new, old = table(["1010", "1110"]), table(["1010", "0100"])
    differences = against_previous(new, json.loads(json.dumps(old)))  # as read back from its file
    assert differences["vhs - previous"][1] == (0.0, 0.0)
    expected = overall_difference(np.array([1, 1, 1, 0]), np.array([0, 1, 0, 0]), tags)
    assert differences["vhs - previous"][2] == pytest.approx(expected)
    assert expected[0] == pytest.approx(0.5)
    new["against_previous"] = differences
    assert "| vhs - previous (same N) | | | +0.000 ± 0.000 | +0.500 ±" in format_tables(new)
    with pytest.raises(ValueError, match="other prompts"):
        against_previous(new, table(["1010", "0100"], split="validation"))
