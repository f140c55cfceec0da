"""Random scenes: free ones, ones that satisfy a prompt, and near misses that fail it by one thing.

Every scene keeps its objects apart (their boxes OBJECT_GAP apart, so the detector never merges
two) and every pair of objects away from the decision boundaries of GenEval's position rule (see
`relation_is_unambiguous`), so that a scene's verdict and caption from pixels equal the ones from
its own objects. All randomness comes from the numpy Generator passed in.
"""

import dataclasses
from itertools import combinations

import numpy as np

from vhs.shapes.captions import caption_scene
from vhs.shapes.prompt_sets import held_out_prompt_texts
from vhs.shapes.prompts import RELATIONS, PromptSpec
from vhs.shapes.rules import check_objects, ground_truth_objects, relation_is_unambiguous
from vhs.shapes.world import COLORS, SHAPES, Scene, SceneObject

# Box sides, as fractions of the image side: 11 to 19 pixels at 64 x 64.
MIN_OBJECT_SIZE = 0.17
MAX_OBJECT_SIZE = 0.30
BORDER = 0.03
OBJECT_GAP = 0.0625
# How far (fraction of the image side) the evaluator's measurement of a centre may be off without
# changing a verdict: half a pixel at 64 x 64, three times the largest error seen there.
MEASUREMENT_TOLERANCE = 1 / 128
MAX_ATTEMPTS = 1000

# The ways a near miss can differ from its prompt, per task.
MISTAKES = {
    "single_object": ("shape", "count"),
    "two_object": ("shape", "count"),
    "counting": ("count", "shape"),
    "colors": ("color", "shape"),
    "position": ("position", "shape"),
    "color_attr": ("color", "shape"),
}


def _random_choice(options: tuple | list, rng: np.random.Generator):
    return options[rng.integers(len(options))]


def _boxes_apart(a: SceneObject, b: SceneObject) -> bool:
    return (
        abs(a.x - b.x) >= (a.size + b.size) / 2 + OBJECT_GAP
        or abs(a.y - b.y) >= (a.size + b.size) / 2 + OBJECT_GAP
    )


def _try_placing(shapes_and_colors: list[tuple[str, str]], rng: np.random.Generator) -> Scene | None:
    """One attempt at random sizes and positions for the objects; None if they did not fit."""
    # Crowded scenes get smaller objects, so that they still fit.
    max_size = min(MAX_OBJECT_SIZE, 0.55 / np.sqrt(max(len(shapes_and_colors), 1)))
    placed = []
    for shape, color in shapes_and_colors:
        for _ in range(100):
            size = rng.uniform(MIN_OBJECT_SIZE, max_size)
            x, y = rng.uniform(BORDER + size / 2, 1 - BORDER - size / 2, size=2)
            candidate = SceneObject(shape, color, float(x), float(y), float(size))
            if all(_boxes_apart(candidate, other) for other in placed):
                placed.append(candidate)
                break
        else:
            return None
    objects = ground_truth_objects(Scene(tuple(placed)))
    if all(relation_is_unambiguous(a, b, MEASUREMENT_TOLERANCE) for a, b in combinations(objects, 2)):
        return Scene(tuple(placed))
    return None


def place_objects(shapes_and_colors: list[tuple[str, str]], rng: np.random.Generator) -> Scene:
    """A scene of the given (shape, color) objects at random sizes and positions; up to 4 place quickly."""
    for _ in range(MAX_ATTEMPTS):
        scene = _try_placing(shapes_and_colors, rng)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not place {len(shapes_and_colors)} objects in {MAX_ATTEMPTS} attempts")


def random_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """A scene of `num_objects` (default: 1 to 4, uniform) objects of random shapes and colours."""
    if num_objects is None:
        num_objects = int(rng.integers(1, 5))
    colors = tuple(COLORS)
    objects = [(_random_choice(SHAPES, rng), _random_choice(colors, rng)) for _ in range(num_objects)]
    return place_objects(objects, rng)


def scene_for_prompt(spec: PromptSpec, rng: np.random.Generator) -> Scene:
    """A scene that passes `spec`: exactly the objects it includes, colours it leaves open drawn at random."""
    colors = tuple(COLORS)
    for _ in range(MAX_ATTEMPTS):
        objects = [
            (clause.shape, clause.color or _random_choice(colors, rng))
            for clause in spec.include
            for _ in range(clause.count)
        ]
        scene = place_objects(objects, rng)
        if check_objects(ground_truth_objects(scene), spec)[0]:
            return scene
    raise RuntimeError(f"no scene found for {spec} in {MAX_ATTEMPTS} attempts")


def _mistaken_spec(spec: PromptSpec, mistake: str, rng: np.random.Generator) -> PromptSpec:
    """A spec that differs from `spec` by one mistake; scenes for it are candidate near misses."""
    include = list(spec.include)
    index = int(rng.integers(len(include)))
    if mistake == "shape":
        unused_shapes = [shape for shape in SHAPES if shape not in {clause.shape for clause in include}]
        include[index] = dataclasses.replace(include[index], shape=_random_choice(unused_shapes, rng))
    elif mistake == "color":
        first_color, last_color = include[0].color, include[-1].color
        if len(include) == 2 and first_color and last_color and first_color != last_color:
            # The attribute-binding mistake: the right colours on the wrong objects.
            include = [dataclasses.replace(include[0], color=last_color),
                       dataclasses.replace(include[1], color=first_color)]  # fmt: skip
        else:
            other_colors = [color for color in COLORS if color != include[index].color]
            include[index] = dataclasses.replace(include[index], color=_random_choice(other_colors, rng))
    elif mistake == "count" and spec.tag == "counting":
        count = include[0].count
        wrong_count = count - 1 if count == 4 or rng.random() < 0.5 else count + 1
        include[0] = dataclasses.replace(include[0], count=wrong_count)
    elif mistake == "count":
        del include[index]
    elif mistake == "position":
        placed = next(i for i, clause in enumerate(include) if clause.position)
        relation, target = include[placed].position
        other_relation = _random_choice([r for r in RELATIONS if r != relation], rng)
        include[placed] = dataclasses.replace(include[placed], position=(other_relation, target))
    return PromptSpec(spec.tag, tuple(include))


def near_miss_scene(spec: PromptSpec, rng: np.random.Generator, mistake: str) -> Scene:
    """A scene that fails `spec` by one `mistake`, one of MISTAKES[spec.tag]:

    shape: an object of another shape in place of one asked for; color: a wrong colour, or for two
    coloured objects the colours swapped; count: one object too many or too few (counting), or
    an object missing; position: the objects in another relation.
    """
    if mistake not in MISTAKES[spec.tag]:
        raise ValueError(f"mistake={mistake!r} is not one of {MISTAKES[spec.tag]} for tag {spec.tag!r}")
    for _ in range(MAX_ATTEMPTS):
        scene = scene_for_prompt(_mistaken_spec(spec, mistake, rng), rng)
        if not check_objects(ground_truth_objects(scene), spec)[0]:
            return scene
    raise RuntimeError(f"no {mistake} near miss found for {spec} in {MAX_ATTEMPTS} attempts")


def sample_training_scene(rng: np.random.Generator) -> tuple[Scene, str]:
    """A random scene and its caption, for training; never a caption that is a held-out prompt."""
    held_out = held_out_prompt_texts()
    while True:
        scene = random_scene(rng)
        caption = caption_scene(scene)
        if caption not in held_out:
            return scene, caption
