"""The fixed evaluation prompt set and the disjoint training prompt distribution.

Every prompt of a task belongs to a group of prompts that describe the same scenes ("a circle and
a square" / "a square and a circle"; "a circle left of a square" / "a square right of a circle").
A fixed, seeded choice of groups is held out: their prompts make the evaluation set and are never
sampled for training. The evaluation set has GenEval's 553 entries per task (80, 99, 80, 94, 100,
100); a task with fewer held-out prompts than entries repeats them, each about equally often, the
way GenEval's score averages several samples per prompt.
"""

import functools
from itertools import combinations, permutations

import numpy as np

from vhs.shapes.prompts import COUNTING_NUMBERS, RELATIONS, TASKS, PromptSpec, prompt_text
from vhs.shapes.world import COLORS, SHAPES

EVALUATION_SEED = 553
# The verifiers choose hyperparameters and checkpoints on prompts of their own: a seeded fifth of
# the training groups of every task, never sampled for verifier training, and at least
# MIN_VALIDATION_GROUPS groups of a task that has twice as many (two_object and position have
# seven training shape pairs: one validation pair could not choose anything).
VALIDATION_SEED = 554
VALIDATION_FRACTION = 0.2
MIN_VALIDATION_GROUPS = 2

EVALUATION_TASK_SIZES = {
    "single_object": 80,
    "two_object": 99,
    "counting": 80,
    "colors": 94,
    "position": 100,
    "color_attr": 100,
}

# Held-out groups per task, of (all groups): single_object 6 (6): every shape is tested alone, and
# training learns the shape words from the other tasks; two_object 8 (15 shape pairs); counting
# 9 (18 shape-number pairs); colors 30 (60); position 8 (15 shape pairs, 8 prompts each);
# color_attr 50 (1350), 2 prompts each: the 100 entries.
HELD_OUT_GROUPS = {
    "single_object": 6,
    "two_object": 8,
    "counting": 9,
    "colors": 30,
    "position": 8,
    "color_attr": 50,
}


def _prompt_groups(tag: str) -> list[tuple[PromptSpec, ...]]:
    """All prompts of a task, grouped by the scenes they describe."""
    shape_pairs = list(combinations(SHAPES, 2))
    if tag == "single_object":
        return [(PromptSpec.single_object(shape),) for shape in SHAPES]
    if tag == "two_object":
        return [(PromptSpec.two_object(a, b), PromptSpec.two_object(b, a)) for a, b in shape_pairs]
    if tag == "counting":
        return [(PromptSpec.counting(shape, n),) for shape in SHAPES for n in COUNTING_NUMBERS]
    if tag == "colors":
        return [(PromptSpec.colors(color, shape),) for shape in SHAPES for color in COLORS]
    if tag == "position":
        return [
            tuple(
                PromptSpec.position(shape, relation, target)
                for shape, target in permutations(pair)
                for relation in RELATIONS
            )
            for pair in shape_pairs
        ]
    if tag == "color_attr":
        return [
            (PromptSpec.color_attr(first, second), PromptSpec.color_attr(second, first))
            for a, b in shape_pairs
            for color_a, color_b in permutations(COLORS, 2)
            for first, second in [((color_a, a), (color_b, b))]
        ]
    raise ValueError(f"tag={tag!r} is not one of {TASKS}")


@functools.cache
def _split(tag: str) -> tuple[list[tuple[PromptSpec, ...]], list[tuple[PromptSpec, ...]]]:
    """(held-out groups, training groups) of a task, fixed by EVALUATION_SEED."""
    groups = _prompt_groups(tag)
    order = np.random.default_rng([EVALUATION_SEED, TASKS.index(tag)]).permutation(len(groups))
    held_out = HELD_OUT_GROUPS[tag]
    return [groups[i] for i in order[:held_out]], [groups[i] for i in order[held_out:]]


@functools.cache
def _evaluation_prompts() -> tuple[PromptSpec, ...]:
    rng = np.random.default_rng(EVALUATION_SEED)
    entries = []
    for tag in TASKS:
        held_out = [spec for group in _split(tag)[0] for spec in group]
        order = rng.permutation(len(held_out))
        entries += [held_out[order[i % len(held_out)]] for i in range(EVALUATION_TASK_SIZES[tag])]
    return tuple(entries)


def evaluation_prompts() -> list[PromptSpec]:
    """The 553 evaluation prompts, grouped by task in TASKS order; the same list on every call."""
    return list(_evaluation_prompts())


@functools.cache
def held_out_prompt_texts() -> frozenset[str]:
    """Every prompt text reserved for evaluation: training must never see one of these."""
    return frozenset(prompt_text(spec) for tag in TASKS for group in _split(tag)[0] for spec in group)


def sample_training_prompt(rng: np.random.Generator, split: str = "all") -> PromptSpec:
    """A random prompt outside the held-out groups: a task with training prompts, a group, a prompt.

    split: "all" (every training group: what the generator trains on), or, for the verifiers, which
    need a validation set disjoint from both their training and the evaluation prompts, "train"
    (the training groups minus the validation groups) or "validation" (`validation_groups`).
    """
    groups_of = {"all": lambda tag: _split(tag)[1], "train": lambda tag: _verifier_split(tag)[1],
                 "validation": lambda tag: _verifier_split(tag)[0]}  # fmt: skip
    if split not in groups_of:
        raise ValueError(f"split must be one of {tuple(groups_of)}, got {split!r}")
    tasks = [tag for tag in TASKS if groups_of[split](tag)]
    groups = groups_of[split](tasks[rng.integers(len(tasks))])
    group = groups[rng.integers(len(groups))]
    return group[rng.integers(len(group))]


@functools.cache
def _verifier_split(tag: str) -> tuple[list[tuple[PromptSpec, ...]], list[tuple[PromptSpec, ...]]]:
    """(validation groups, verifier-training groups): the training groups of a task cut by
    VALIDATION_SEED, VALIDATION_FRACTION of them for validation: at least MIN_VALIDATION_GROUPS where
    the task has twice as many, at least one where it has two."""
    groups = _split(tag)[1]
    order = np.random.default_rng([VALIDATION_SEED, TASKS.index(tag)]).permutation(len(groups))
    floor = MIN_VALIDATION_GROUPS if len(groups) >= 2 * MIN_VALIDATION_GROUPS else min(1, len(groups) // 2)
    count = max(floor, round(VALIDATION_FRACTION * len(groups)))
    return [groups[i] for i in order[:count]], [groups[i] for i in order[count:]]


@functools.cache
def validation_prompt_texts() -> frozenset[str]:
    """Every prompt text of the verifiers' validation groups (disjoint from training and evaluation)."""
    return frozenset(
        prompt_text(spec) for tag in TASKS for group in _verifier_split(tag)[0] for spec in group
    )
