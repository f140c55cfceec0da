"""Captions: one sentence saying which objects a scene or an image shows, and where.

Objects are named left to right, equal objects (same colour and shape) counted together: "a photo
of a red circle, two blue squares and a green triangle". Two different objects in a clear
relation are phrased like GenEval's position prompts, with their colours: "a photo of a red
circle left of a blue square". `caption_image` reads the objects from pixels: it plays the
re-captioner of the verifier's alignment stage. An object of unknown colour is named by its shape.

`object_map` says the same in space, one class per cell of a grid: which object (colour and shape)
has its centre in the cell, if any. Its classes count, name and place every object, all that a
verdict reads, so the verifiers' training can ask each visual token for its cell.
"""

from collections import Counter

import numpy as np

from vhs.shapes.detect import detect_objects
from vhs.shapes.prompts import noun_phrase
from vhs.shapes.rules import DetectedObject, ground_truth_objects, relative_position
from vhs.shapes.world import COLORS, SHAPES, Scene

# Object-map classes: 0 for no object's centre, then one per (colour or unknown, shape).
OBJECT_COLORS = (*COLORS, None)
NUM_OBJECT_CLASSES = 1 + len(OBJECT_COLORS) * len(SHAPES)


def caption_objects(objects: list[DetectedObject]) -> str:
    """The caption of a set of objects (see the module docstring)."""
    if not objects:
        return "a photo of an empty background"
    left_to_right = sorted(objects, key=lambda obj: obj.center[0])
    if len(objects) == 2:
        left, right = left_to_right
        relations = relative_position(left, right)
        # The left object is never "right of"; a horizontal relation wins over a vertical one.
        relation = next((r for r in ("left of", "above", "below") if r in relations), None)
        if relation and (left.shape, left.color) != (right.shape, right.color):
            return (
                f"a photo of {noun_phrase(left.shape, color=left.color)} {relation} "
                f"{noun_phrase(right.shape, color=right.color)}"
            )
    # Counter keeps the order in which objects are first seen: left to right.
    counts = Counter((obj.color, obj.shape) for obj in left_to_right)
    phrases = [noun_phrase(shape, count, color) for (color, shape), count in counts.items()]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return "a photo of " + listed


def caption_scene(scene: Scene) -> str:
    """The caption of a scene, from its own objects (the ground truth)."""
    return caption_objects(ground_truth_objects(scene))


def caption_image(image: np.ndarray) -> str:
    """The caption of an image (uint8 (H, W, 3)), from the objects detected in its pixels."""
    return caption_objects(detect_objects(image))


def object_class(obj: DetectedObject) -> int:
    """The object-map class of an object (1 .. NUM_OBJECT_CLASSES - 1)."""
    return 1 + OBJECT_COLORS.index(obj.color) * len(SHAPES) + SHAPES.index(obj.shape)


def object_map(objects: list[DetectedObject], grid: int) -> np.ndarray:
    """(grid * grid,) uint8 for a square image, row-major like a reader's visual tokens: the class of
    the object whose centre lies in each cell (the largest where several do), 0 where none does."""
    cells = np.zeros(grid * grid, np.uint8)
    for obj in sorted(objects, key=lambda obj: obj.area):  # larger objects written last win a cell
        # A centre may lie outside the frame (an object cut by the edge): its nearest cell.
        column, row = (int(np.clip(np.floor(c * grid), 0, grid - 1)) for c in obj.center)
        cells[row * grid + column] = object_class(obj)
    return cells
