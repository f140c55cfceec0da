"""Captions: one sentence saying which objects a scene or an image shows, and where.

Objects are named left to right, equal objects (same colour and shape) counted together: "a photo
of a red circle, two blue squares and a green triangle". Two different objects in a clear
relation are phrased like GenEval's position prompts, with their colours: "a photo of a red
circle left of a blue square". `caption_image` reads the objects from pixels: it plays the
re-captioner of the verifier's alignment stage. An object of unknown colour is named by its shape.
"""

from collections import Counter

import numpy as np

from vhs.shapes.detect import detect_objects
from vhs.shapes.prompts import noun_phrase
from vhs.shapes.rules import DetectedObject, ground_truth_objects, relative_position
from vhs.shapes.world import Scene


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
