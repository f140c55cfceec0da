"""Shapes world prompts: GenEval's phrasing and metadata, the evaluation set, the training split."""

import json
from collections import Counter

import numpy as np
import pytest

from vhs.shapes import (
    COLORS,
    EVALUATION_TASK_SIZES,
    SHAPES,
    TASKS,
    ObjectClause,
    PromptSpec,
    evaluation_prompts,
    held_out_prompt_texts,
    parse_prompt,
    prompt_text,
    sample_training_prompt,
)


def _training_prompts(count: int) -> list[PromptSpec]:
    rng = np.random.default_rng(0)
    return [sample_training_prompt(rng) for _ in range(count)]


def test_evaluation_set_has_genevals_553_prompts_per_task():
    prompts = evaluation_prompts()
    assert len(prompts) == 553
    assert Counter(spec.tag for spec in prompts) == EVALUATION_TASK_SIZES
    assert EVALUATION_TASK_SIZES == {
        "single_object": 80, "two_object": 99, "counting": 80,
        "colors": 94, "position": 100, "color_attr": 100,
    }  # fmt: skip


def test_evaluation_set_is_the_same_on_every_call():
    first = evaluation_prompts()
    np.random.seed(1)  # the legacy global generator must not matter
    assert evaluation_prompts() == first


def test_evaluation_set_tests_every_shape_colour_and_relation():
    clauses = [clause for spec in evaluation_prompts() for clause in spec.include]
    assert {clause.shape for clause in clauses} == set(SHAPES)
    assert {clause.color for clause in clauses if clause.color} == set(COLORS)
    assert {clause.position[0] for clause in clauses if clause.position} == {
        "left of", "right of", "above", "below",
    }  # fmt: skip
    assert {clause.count for clause in clauses} == {1, 2, 3, 4}


def test_training_never_samples_an_evaluation_prompt():
    held_out = held_out_prompt_texts()
    assert {prompt_text(spec) for spec in evaluation_prompts()} <= held_out
    training = _training_prompts(3000)
    assert not {prompt_text(spec) for spec in training} & held_out
    # Every task but single_object (all of whose six prompts are held out) is trained on.
    assert {spec.tag for spec in training} == set(TASKS) - {"single_object"}


def test_training_prompts_are_seed_deterministic():
    assert _training_prompts(50) == _training_prompts(50)


@pytest.mark.parametrize(
    ("text", "metadata"),
    [
        ("a photo of a circle", {"tag": "single_object", "include": [{"class": "circle", "count": 1}]}),
        (
            "a photo of a circle and a square",
            {"tag": "two_object", "include": [{"class": "circle", "count": 1},
                                              {"class": "square", "count": 1}]},
        ),
        (
            "a photo of three triangles",
            {"tag": "counting", "include": [{"class": "triangle", "count": 3}],
             "exclude": [{"class": "triangle", "count": 4}]},
        ),
        (
            "a photo of a blue square",
            {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "blue"}]},
        ),
        (
            "a photo of a circle left of a square",
            {"tag": "position", "include": [{"class": "square", "count": 1},
                                            {"class": "circle", "count": 1, "position": ["left of", 0]}]},
        ),
        (
            "a photo of a red circle and a green square",
            {"tag": "color_attr", "include": [{"class": "circle", "count": 1, "color": "red"},
                                              {"class": "square", "count": 1, "color": "green"}]},
        ),
    ],
)  # fmt: skip
def test_prompt_text_and_genevals_metadata_convert_both_ways(text, metadata):
    spec = parse_prompt(text)
    assert spec.to_metadata() == {**metadata, "prompt": text}
    assert PromptSpec.from_metadata(metadata) == spec
    assert prompt_text(spec) == text


def test_every_evaluation_and_training_prompt_round_trips():
    for spec in evaluation_prompts() + _training_prompts(1000):
        text = prompt_text(spec)
        assert parse_prompt(text) == spec
        metadata = json.loads(json.dumps(spec.to_metadata()))
        assert PromptSpec.from_metadata(metadata) == spec
        assert metadata["prompt"] == text


def test_prompt_text_uses_an_before_vowels_and_proper_plurals():
    assert prompt_text(PromptSpec.colors("orange", "cross")) == "a photo of an orange cross"
    assert prompt_text(PromptSpec.counting("cross", 4)) == "a photo of four crosses"
    assert parse_prompt("  A photo of an Orange   cross ") == PromptSpec.colors("orange", "cross")


@pytest.mark.parametrize(
    "text",
    ["a photo of a dog", "a photo of a circle and a circle", "a photo of five circles", "a circle", ""],
)
def test_parse_prompt_rejects_text_outside_the_templates(text):
    with pytest.raises(ValueError, match="prompt"):
        parse_prompt(text)


def test_prompt_text_rejects_a_spec_that_fits_no_template():
    colourless_colors_prompt = PromptSpec("colors", (ObjectClause("circle"),))
    with pytest.raises(ValueError, match="template"):
        prompt_text(colourless_colors_prompt)


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"tag": "colors", "include": [{"class": "dog", "count": 1}]}, "dog"),
        ({"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "teal"}]}, "teal"),
        ({"tag": "painting", "include": [{"class": "circle", "count": 1}]}, "painting"),
        ({"tag": "counting", "include": [{"class": "circle", "count": 0}]}, "count"),
        ({"tag": "position", "include": [{"class": "circle", "position": ["near", 0]}]}, "near"),
        ({"tag": "position", "include": [{"class": "circle", "position": ["above", 0]}]}, "earlier"),
        ({"tag": "colors", "include": []}, "include"),
    ],
)
def test_from_metadata_names_the_bad_field(metadata, named):
    with pytest.raises(ValueError, match=named):
        PromptSpec.from_metadata(metadata)
