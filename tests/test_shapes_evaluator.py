"""The shapes evaluator: exact on rendered scenes, right and wrong alike, for every task type."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from vhs.shapes import (
    BACKGROUND,
    COLORS,
    MISTAKES,
    SHAPES,
    TASKS,
    DetectedObject,
    PromptSpec,
    Scene,
    SceneObject,
    caption_image,
    caption_scene,
    check_objects,
    detect_objects,
    evaluate,
    evaluate_with_reason,
    evaluation_prompts,
    ground_truth_objects,
    near_miss_scene,
    object_map,
    random_scene,
    relative_position,
    render_scene,
    sample_training_prompt,
    scene_for_prompt,
)
from vhs.shapes.detect import estimate_background
from vhs.shapes.robustness import KINDS, agreement, robustness_cases
from vhs.shapes.rules import MIN_CONFIDENCE

# Scenes per task for the right-scene test, per (task, mistake) for the near-miss test: together
# about 5000 rendered images.
RIGHT_SCENES_PER_TASK = 400
NEAR_MISSES_PER_MISTAKE = 150
RANDOM_SCENES = 1200
ROBUSTNESS_CASES_PER_KIND = 150


def _prompts_of_task(tag: str, count: int, rng: np.random.Generator) -> list[PromptSpec]:
    """Evaluation prompts of the task, then training prompts of it, `count` in all."""
    prompts = [spec for spec in evaluation_prompts() if spec.tag == tag][: count // 2]
    while len(prompts) < count and tag != "single_object":
        spec = sample_training_prompt(rng)
        if spec.tag == tag:
            prompts.append(spec)
    return [prompts[i % len(prompts)] for i in range(count)]


def _scene(*objects: tuple) -> Scene:
    """A scene from (shape, color, x, y) tuples, each object 0.2 of the image side."""
    return Scene(tuple(SceneObject(shape, color, x, y, 0.2) for shape, color, x, y in objects))


def _object(shape: str, color: str | None, x: float, y: float, size: float = 0.2) -> DetectedObject:
    return DetectedObject(shape, color, (x, y), (size, size), size**2)


def test_render_is_deterministic_uint8_with_plain_background_and_palette_colours():
    scene = Scene((SceneObject("square", "blue", 0.5, 0.5, 0.25),))
    image = render_scene(scene)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, render_scene(scene))
    assert tuple(image[0, 0]) == BACKGROUND
    assert tuple(image[32, 32]) == COLORS["blue"]
    assert render_scene(scene, size=128).shape == (128, 128, 3)


def test_render_antialiases_edges():
    image = render_scene(Scene((SceneObject("circle", "black", 0.5, 0.5, 0.3),)))
    levels = {tuple(pixel) for pixel in image.reshape(-1, 3)}
    assert len(levels) > 5  # background, black, and blends between them


def test_random_scenes_are_seed_deterministic_and_never_overlap():
    scenes = [random_scene(np.random.default_rng(7)) for _ in range(2)]
    assert scenes[0] == scenes[1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        objects = random_scene(rng).objects
        assert 1 <= len(objects) <= 4
        for i, a in enumerate(objects):
            for b in objects[i + 1 :]:
                apart = max(abs(a.x - b.x), abs(a.y - b.y)) - (a.size + b.size) / 2
                assert apart > 0


@pytest.mark.slow  # hundreds of rendered scenes
def test_detection_and_caption_of_random_scenes_equal_the_ground_truth():
    rng = np.random.default_rng(1)
    for _ in range(RANDOM_SCENES):
        scene = random_scene(rng)
        image = render_scene(scene)
        truth = sorted(ground_truth_objects(scene), key=lambda obj: obj.center)
        detected = sorted(detect_objects(image), key=lambda obj: obj.center)
        assert [(obj.shape, obj.color) for obj in detected] == [(obj.shape, obj.color) for obj in truth]
        centre_errors = np.subtract([obj.center for obj in detected], [obj.center for obj in truth])
        assert np.abs(centre_errors).max() * 64 < 0.25  # pixels
        assert caption_image(image) == caption_scene(scene)


@pytest.mark.parametrize("tag", TASKS)
def test_evaluator_passes_every_scene_made_for_the_prompt(tag):
    rng = np.random.default_rng(TASKS.index(tag))
    for spec in _prompts_of_task(tag, RIGHT_SCENES_PER_TASK, rng):
        image = render_scene(scene_for_prompt(spec, rng))
        passed, reason = evaluate_with_reason(image, spec)
        assert passed, f"{spec.to_metadata()['prompt']}: {reason}"


# The words GenEval's reasons use for each kind of mistake.
REASON_WORDS = {"shape": "expected", "count": "expected", "color": "expected", "position": "target"}


@pytest.mark.parametrize(("tag", "mistake"), [(tag, mistake) for tag in TASKS for mistake in MISTAKES[tag]])
def test_evaluator_fails_every_near_miss(tag, mistake):
    rng = np.random.default_rng(100 + TASKS.index(tag))
    for spec in _prompts_of_task(tag, NEAR_MISSES_PER_MISTAKE, rng):
        image = render_scene(near_miss_scene(spec, rng, mistake))
        passed, reason = evaluate_with_reason(image, spec)
        assert not passed, f"{mistake} near miss passed {spec.to_metadata()['prompt']}"
        assert REASON_WORDS[mistake] in reason


def test_near_misses_cover_count_colour_shape_and_position():
    assert {mistake for mistakes in MISTAKES.values() for mistake in mistakes} == {
        "shape", "count", "color", "position",
    }  # fmt: skip
    assert set(MISTAKES) == set(TASKS)


def test_counting_needs_the_exact_count():
    spec = PromptSpec.counting("triangle", 2)
    triangles = [("triangle", "red", x, 0.5) for x in (0.15, 0.5, 0.85)]
    assert evaluate(render_scene(_scene(*triangles[:2])), spec)
    passed, reason = evaluate_with_reason(render_scene(_scene(*triangles)), spec)
    assert not passed and reason == "expected triangle<3, found 3"
    passed, reason = evaluate_with_reason(render_scene(_scene(*triangles[:1])), spec)
    assert not passed and reason == "expected triangle>=2, found 1"


def test_colour_attribution_rejects_swapped_colours_with_genevals_reason():
    spec = PromptSpec.color_attr(("red", "circle"), ("green", "square"))
    right = _scene(("circle", "red", 0.25, 0.5), ("square", "green", 0.75, 0.5))
    swapped = _scene(("circle", "green", 0.25, 0.5), ("square", "red", 0.75, 0.5))
    assert evaluate(render_scene(right), spec)
    passed, reason = evaluate_with_reason(render_scene(swapped), spec)
    assert not passed
    assert reason.splitlines() == [
        "expected red circle>=1, found 0 red; and 1 green",
        "expected green square>=1, found 0 green; and 1 red",
    ]


def test_other_objects_do_not_fail_a_prompt_but_other_counts_do():
    image = render_scene(_scene(("circle", "red", 0.25, 0.5), ("ring", "blue", 0.75, 0.5)))
    assert evaluate(image, PromptSpec.single_object("circle"))
    assert evaluate(image, PromptSpec.colors("red", "circle"))
    assert evaluate(image, PromptSpec.position("circle", "left of", "ring"))
    assert not evaluate(image, PromptSpec.position("circle", "right of", "ring"))
    assert not evaluate(image, PromptSpec.colors("blue", "circle"))


def test_position_follows_genevals_rule_on_centre_offsets_and_box_sizes():
    target = _object("square", "red", 0.5, 0.5)
    assert relative_position(_object("circle", "red", 0.2, 0.5), target) == {"left of"}
    assert relative_position(_object("circle", "red", 0.8, 0.5), target) == {"right of"}
    assert relative_position(_object("circle", "red", 0.5, 0.1), target) == {"above"}
    assert relative_position(_object("circle", "red", 0.5, 0.9), target) == {"below"}
    assert relative_position(_object("circle", "red", 0.2, 0.2), target) == {"left of", "above"}
    # Offsets within 0.1 x (sum of the box sizes) = 0.04 count as none.
    assert relative_position(_object("circle", "red", 0.47, 0.53), target) == set()
    # A mostly vertical offset is not "left of".
    assert relative_position(_object("circle", "red", 0.4, 0.1), target) == {"above"}


def test_a_colour_clause_checks_the_most_confident_objects_as_geneval_does():
    red = DetectedObject("circle", "red", (0.2, 0.5), (0.1, 0.1), 0.01, confidence=0.6)
    purple = DetectedObject("circle", "purple", (0.7, 0.5), (0.3, 0.3), 0.07, confidence=0.9)
    assert not check_objects([red, purple], PromptSpec.colors("red", "circle"))[0]
    assert check_objects(
        [red, dataclasses.replace(purple, confidence=0.5)], PromptSpec.colors("red", "circle")
    )[0]


def test_unsure_objects_never_satisfy_a_clause_but_count_against_an_exact_number():
    sure = [_object("diamond", "red", 0.2 + 0.3 * i, 0.3) for i in range(3)]
    unsure = dataclasses.replace(_object("diamond", "red", 0.5, 0.8), confidence=MIN_CONFIDENCE / 2)
    assert check_objects(sure, PromptSpec.counting("diamond", 3))[0]
    passed, reason = check_objects([*sure, unsure], PromptSpec.counting("diamond", 3))
    assert not passed and reason == "expected diamond<4, found 4"
    assert not check_objects([unsure], PromptSpec.single_object("diamond"))[0]


def test_a_frame_filling_colour_is_no_object():
    for rgb in [*COLORS.values(), (0, 200, 200)]:
        image = np.full((64, 64, 3), rgb, np.uint8)
        assert detect_objects(image) == []
        assert not evaluate(image, PromptSpec.single_object("square"))


def test_positions_use_box_centres_as_geneval_does():
    triangle = SceneObject("triangle", "red", 0.3, 0.4, 0.25)
    (truth,) = ground_truth_objects(Scene((triangle,)))
    (detected,) = detect_objects(render_scene(Scene((triangle,))))
    assert truth.center == (0.3, 0.4)
    assert np.abs(np.subtract(detected.center, truth.center)).max() * 64 < 0.3  # pixels


@pytest.mark.slow  # hundreds of rendered scenes
@pytest.mark.parametrize("kind", [kind for kind, (_, required) in KINDS.items() if required is not None])
def test_evaluator_agrees_with_the_construction_on_what_generators_draw(kind):
    """Blur, noise, off-palette colour, JPEG, ragged edges, touching objects, objects cut by the
    frame, empty images: the agreement `make evaluator-robustness` reports, on fewer cases."""
    cases = robustness_cases(kind, ROBUSTNESS_CASES_PER_KIND)
    assert agreement(cases) >= KINDS[kind][1]
    if kind in ("blank", "noise only", "solid colour"):
        assert not any(evaluate(case.image, case.spec) for case in cases)


def test_an_off_palette_colour_counts_as_an_object_of_no_colour():
    image = render_scene(Scene((SceneObject("square", "blue", 0.5, 0.5, 0.25),)))
    image[np.all(image == COLORS["blue"], axis=2)] = (0, 255, 255)  # cyan: no palette colour
    (detected,) = detect_objects(image)
    assert (detected.shape, detected.color) == ("square", None)
    assert evaluate(image, PromptSpec.single_object("square"))
    assert not evaluate(image, PromptSpec.colors("blue", "square"))
    assert caption_image(image) == "a photo of a square"


def test_background_and_specks_are_no_objects():
    image = render_scene(Scene(()))
    assert detect_objects(image) == []
    image[10:12, 10:12] = COLORS["red"]  # 4 pixels: noise, not a shape
    assert detect_objects(image) == []
    assert caption_image(image) == "a photo of an empty background"


def test_captions_name_objects_left_to_right_with_counts_and_relations():
    pair = _scene(("square", "blue", 0.75, 0.5), ("circle", "red", 0.25, 0.5))
    assert caption_scene(pair) == "a photo of a red circle left of a blue square"
    stacked = _scene(("ring", "white", 0.5, 0.2), ("cross", "orange", 0.55, 0.8))
    assert caption_scene(stacked) == "a photo of a white ring above an orange cross"
    group = _scene(
        ("triangle", "green", 0.15, 0.2), ("diamond", "black", 0.45, 0.5), ("triangle", "green", 0.8, 0.8)
    )
    assert caption_scene(group) == "a photo of two green triangles and a black diamond"
    assert caption_image(render_scene(group)) == caption_scene(group)


def test_the_object_map_names_and_places_every_object_at_its_centre_cell():
    group = _scene(
        ("triangle", "green", 0.15, 0.2), ("diamond", "black", 0.45, 0.5), ("triangle", "green", 0.8, 0.8)
    )
    cells = object_map(detect_objects(render_scene(group)), grid=8)
    # Row-major cells of the 8 x 8 grid: (x, y) = (0.15, 0.2) is column 1, row 1.
    green_triangle = 1 + list(COLORS).index("green") * len(SHAPES) + SHAPES.index("triangle")
    black_diamond = 1 + list(COLORS).index("black") * len(SHAPES) + SHAPES.index("diamond")
    assert {int(i): int(cells[i]) for i in np.flatnonzero(cells)} == {
        1 * 8 + 1: green_triangle,
        4 * 8 + 3: black_diamond,
        6 * 8 + 6: green_triangle,
    }
    assert object_map([], grid=4).tolist() == [0] * 16
    # Two centres in one cell: the larger object is the cell's.
    small = DetectedObject("circle", "red", (0.5, 0.5), (0.1, 0.1), 0.01, 1.0)
    large = DetectedObject("square", "blue", (0.52, 0.52), (0.3, 0.3), 0.09, 1.0)
    assert object_map([large, small], grid=2)[3] == 1 + list(COLORS).index("blue") * len(SHAPES) + 1
    # An object cut by the frame may have its centre outside it: the nearest cell holds it.
    cut = DetectedObject("ring", None, (-0.04, 1.02), (0.2, 0.2), 0.02, 1.0)
    unknown_colour_ring = 1 + len(COLORS) * len(SHAPES) + SHAPES.index("ring")
    assert object_map([cut], grid=2).tolist() == [0, 0, unknown_colour_ring, 0]


def test_every_shape_and_colour_is_recognised_at_the_smallest_size():
    for shape in SHAPES:
        for color in COLORS:
            scene = Scene((SceneObject(shape, color, 0.5, 0.5, 0.17),))
            (detected,) = detect_objects(render_scene(scene))
            assert (detected.shape, detected.color) == (shape, color)


@pytest.mark.parametrize("shift", [-15, 15])
def test_a_brightness_shifted_render_is_judged_as_the_unshifted_one(shift):
    """The background is measured on the image, not assumed: exposure drifting by 15 RGB (background
    and objects alike) changes no detection and no verdict."""
    rng = np.random.default_rng(11)
    for _ in range(60):
        spec = sample_training_prompt(rng)
        scene = (
            scene_for_prompt(spec, rng)
            if rng.random() < 0.5
            else near_miss_scene(spec, rng, MISTAKES[spec.tag][rng.integers(len(MISTAKES[spec.tag]))])
        )
        image = render_scene(scene)
        shifted = np.clip(image.astype(int) + shift, 0, 255).astype(np.uint8)
        truth = sorted(ground_truth_objects(scene), key=lambda obj: obj.center)
        detected = sorted(detect_objects(shifted), key=lambda obj: obj.center)
        assert [(obj.shape, obj.color) for obj in detected] == [(obj.shape, obj.color) for obj in truth]
        centre_errors = np.subtract([obj.center for obj in detected], [obj.center for obj in truth])
        assert np.abs(centre_errors).max() * 64 < 0.25  # pixels
        assert evaluate(shifted, spec) == evaluate(image, spec) == check_objects(truth, spec)[0]


def test_the_background_is_estimated_from_the_image_exactly_on_clean_renders():
    rng = np.random.default_rng(12)
    for _ in range(50):
        image = render_scene(random_scene(rng))
        smoothed = ndimage.median_filter(image.astype(np.float32), size=(3, 3, 1))
        assert tuple(estimate_background(smoothed)) == BACKGROUND
        darker = np.clip(image.astype(int) - 15, 0, 255).astype(np.float32)
        smoothed = ndimage.median_filter(darker, size=(3, 3, 1))
        assert tuple(estimate_background(smoothed)) == tuple(value - 15 for value in BACKGROUND)


def test_objects_on_another_grey_are_found():
    scene = _scene(("circle", "red", 0.3, 0.5), ("cross", "white", 0.7, 0.5))
    image = render_scene(scene)
    for grey in (100, 160):
        recoloured = image.copy()
        recoloured[np.all(image == BACKGROUND, axis=2)] = grey  # the background only; edges stay blended
        assert sorted((obj.shape, obj.color) for obj in detect_objects(recoloured)) == [
            ("circle", "red"), ("cross", "white"),
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("behind", "front", "spec"),
    [
        (
            ("circle", "orange", 0.66, 0.34, 0.2),
            ("circle", "red", 0.66, 0.56, 0.3),
            PromptSpec.counting("circle", 2),
        ),
        (
            ("ring", "pink", 0.47, 0.41, 0.175),
            ("square", "red", 0.61, 0.41, 0.178),
            PromptSpec.colors("pink", "ring"),
        ),
        (
            ("cross", "orange", 0.67, 0.77, 0.173),
            ("square", "red", 0.83, 0.77, 0.204),
            PromptSpec.single_object("cross"),
        ),
    ],
)
def test_an_object_partly_behind_another_keeps_its_shape(behind, front, spec):
    """2 px of the first object lie under the second: the hidden part is not held against its shape."""
    image = render_scene(Scene((SceneObject(*behind), SceneObject(*front))))
    passed, reason = evaluate_with_reason(image, spec)
    assert passed, reason
