"""The shapes world: its vocabulary, scenes and the renderer.

A scene is a few coloured shapes on a plain grey background. Positions and sizes are fractions of
the image side, so one scene renders at any resolution. Coordinates are (x, y) with y pointing
down, as in image arrays.
"""

import functools
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")

# GenEval's ten colour names, with RGB values far from each other (pairwise distance >= 100) and
# from the background (>= 100), so that a pixel's nearest palette colour is never in doubt.
COLORS = {
    "red": (210, 30, 40),
    "orange": (250, 135, 20),
    "yellow": (245, 230, 60),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "purple": (140, 50, 200),
    "pink": (245, 150, 210),
    "brown": (115, 65, 25),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}

# Mid-grey lets black and white both be object colours.
BACKGROUND = (128, 128, 128)

# Inner radius of a ring as a fraction of its outer radius: thick enough to survive blur, with a
# hole wide enough to tell it from a circle.
RING_INNER_RATIO = 0.5

# How far below its box centre a shape's centre of mass lies, in box sides: a triangle's
# centroid is a third of the way up from its base.
CENTER_OF_MASS_DROP = {shape: 1 / 6 if shape == "triangle" else 0.0 for shape in SHAPES}

# Each output pixel averages SUPERSAMPLING x SUPERSAMPLING samples: the antialiasing.
SUPERSAMPLING = 4


@dataclass(frozen=True)
class SceneObject:
    """One shape: its box is a square of side `size` centred on (x, y), all fractions of the image side."""

    shape: str
    color: str
    x: float
    y: float
    size: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape={self.shape!r} is not one of {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"color={self.color!r} is not one of {tuple(COLORS)}")


@dataclass(frozen=True)
class Scene:
    """The objects of one image; they never overlap."""

    objects: tuple[SceneObject, ...]


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points lie inside `shape`.

    u, v: broadcastable arrays of coordinates relative to the box centre, in units of half the box
    side (the box is [-1, 1] x [-1, 1], v pointing down). Returns a bool array of their broadcast shape.
    """
    inside_box = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    radius_squared = u**2 + v**2
    if shape == "circle":
        return radius_squared <= 1
    if shape == "square":
        return inside_box
    if shape == "triangle":
        return inside_box & (np.abs(u) <= (v + 1) / 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if shape == "cross":
        return inside_box & ((np.abs(u) <= 1 / 3) | (np.abs(v) <= 1 / 3))
    if shape == "ring":
        return (radius_squared <= 1) & (radius_squared >= RING_INNER_RATIO**2)
    raise ValueError(f"shape={shape!r} is not one of {SHAPES}")


@functools.cache
def shape_fill_ratio(shape: str) -> float:
    """The fraction of its square box a shape covers (circle pi/4, triangle 1/2, ...)."""
    samples = (np.arange(200) + 0.5) / 100 - 1
    return float(shape_mask(shape, samples[None, :], samples[:, None]).mean())


def render_scene(
    scene: Scene, size: int = 64, object_colors: list[tuple[float, float, float]] | None = None
) -> np.ndarray:
    """Draw a scene, antialiased. Objects may reach beyond the frame; later ones cover earlier ones.

    object_colors: the RGB of each object instead of its palette colour (off-palette renders for
    testing the evaluator). Returns a uint8 array (size, size, 3), RGB. Deterministic: the same
    scene gives the same pixels.
    """
    if object_colors is None:
        object_colors = [COLORS[obj.color] for obj in scene.objects]
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = BACKGROUND
    for obj, rgb in zip(scene.objects, object_colors, strict=True):
        # Only the pixels under the object's box are touched.
        half_side = obj.size / 2
        left = max(int(np.floor((obj.x - half_side) * size)), 0)
        right = min(int(np.ceil((obj.x + half_side) * size)), size)
        top = max(int(np.floor((obj.y - half_side) * size)), 0)
        bottom = min(int(np.ceil((obj.y + half_side) * size)), size)
        fine_size = size * SUPERSAMPLING
        u = ((np.arange(left * SUPERSAMPLING, right * SUPERSAMPLING) + 0.5) / fine_size - obj.x) / half_side
        v = ((np.arange(top * SUPERSAMPLING, bottom * SUPERSAMPLING) + 0.5) / fine_size - obj.y) / half_side
        inside = shape_mask(obj.shape, u[None, :], v[:, None])
        coverage = inside.reshape(bottom - top, SUPERSAMPLING, right - left, SUPERSAMPLING).mean(axis=(1, 3))
        coverage = coverage[:, :, None].astype(np.float32)
        window = canvas[top:bottom, left:right]
        window[:] = window * (1 - coverage) + coverage * np.asarray(rgb, np.float32)
    return np.round(canvas).astype(np.uint8)
