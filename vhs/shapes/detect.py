"""Finding the objects of a shapes-world image from its pixels alone.

1. Foreground: pixels whose colour is far from the background.
2. Objects: 8-connected components of the foreground, without specks.
3. Colour: the median of a component's strongest pixels (those farthest from the background),
   named by the nearest palette colour when it is near enough.
4. Matte: each pixel's coverage by the object (alpha), from where its colour lies between the
   background and the object's colour. It gives the area and the centre of mass to a fraction
   of a pixel, on antialiased or blurred edges alike.
5. Shape: for each shape, the box it would have given the object's mass and centre of mass
   (which blur leaves unchanged), and how much of each cell of a 7 x 7 grid over that box the
   object covers, compared with how much that shape covers (a cross leaves the corners empty, a
   ring the centre, a triangle the top corners, ...); the closest shape wins. Such coarse
   coverages survive the blur of generated images, unlike pixel templates.
"""

import functools

import numpy as np
from scipy import ndimage

from vhs.shapes.rules import DetectedObject
from vhs.shapes.world import BACKGROUND, CENTER_OF_MASS_DROP, COLORS, SHAPES, shape_fill_ratio, shape_mask

# RGB distance from the background above which a pixel belongs to an object: about a third of
# the weakest palette colour's distance (purple, 107), far above a generator's background noise.
FOREGROUND_MIN_DISTANCE = 40.0
# Components smaller than this fraction of the image are noise (the smallest shape covers ~1.5 %).
MIN_OBJECT_AREA = 0.003
# A component's colour is named only within this RGB distance of a palette colour (palette
# colours are >= 100 apart).
COLOR_MATCH_MAX_DISTANCE = 60.0
# Pixels at least this fraction of the component's largest distance from the background count
# as its "strongest" pixels, the ones that show its colour unmixed.
STRONG_PIXEL_FRACTION = 0.75
# The matte takes in pixels up to this many pixels beyond the thresholded component: the faint
# edge that antialiasing and blur leave below the threshold. Objects are >= 4 pixels apart.
RIM_WIDTH = 2
# The box is cut in GRID_CELLS x GRID_CELLS cells; shapes are told apart by how much of each
# cell they cover. Seven cells resolve the cross's arms and the ring's hole at 11 pixels.
GRID_CELLS = 7
# Largest root-mean-square difference between an object's cell coverages and its shape's ideal
# ones for it to count as that shape. Rendered shapes differ by <= 0.06 from their own ideal and
# >= 0.16 from any other's; blurred with a Gaussian of 0.8 pixels, by <= 0.14.
SHAPE_MATCH_MAX_DISTANCE = 0.2

_PALETTE_NAMES = tuple(COLORS)
_PALETTE_OFFSETS = np.array([COLORS[name] for name in _PALETTE_NAMES], np.float32) - np.float32(BACKGROUND)
_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)
_FILL_RATIOS = np.array([shape_fill_ratio(shape) for shape in SHAPES])
_CENTER_OF_MASS_DROPS = np.array([CENTER_OF_MASS_DROP[shape] for shape in SHAPES])


@functools.cache
def _shape_grids() -> np.ndarray:
    """Each shape's ideal coverage of the GRID_CELLS x GRID_CELLS cells of its box: (len(SHAPES), cells²)."""
    samples_per_cell = 12
    samples = GRID_CELLS * samples_per_cell
    points = (np.arange(samples) + 0.5) / (samples / 2) - 1
    grids = []
    for shape in SHAPES:
        inside = shape_mask(shape, points[None, :], points[:, None])
        cells = inside.reshape(GRID_CELLS, samples_per_cell, GRID_CELLS, samples_per_cell).mean(axis=(1, 3))
        grids.append(cells.ravel())
    return np.array(grids)


def _cell_overlaps(starts: np.ndarray, length: np.ndarray, num_pixels: int) -> np.ndarray:
    """(n, GRID_CELLS, num_pixels): how much of pixel i's span [i, i + 1) lies in each cell of
    [start, start + length) cut in GRID_CELLS equal parts, for n boxes (starts, lengths: (n,)).

    The outer cells reach to infinity: a pixel on the box's edge is only partly inside the box,
    but the object's part of it is, so it must count whole.
    """
    edges = starts[:, None] + length[:, None] * np.arange(GRID_CELLS + 1) / GRID_CELLS
    edges[:, 0], edges[:, -1] = -np.inf, np.inf
    pixels = np.arange(num_pixels)
    overlap = np.minimum(edges[:, 1:, None], pixels + 1) - np.maximum(edges[:, :-1, None], pixels)
    return np.clip(overlap, 0, None)


def detect_objects(image: np.ndarray) -> list[DetectedObject]:
    """The recognised objects of an image, in no particular order.

    image: uint8 (H, W, 3) RGB. Components whose shape matches none of SHAPES are left out;
    an object whose colour matches no palette colour is reported with color None.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image shape {image.shape} must be (height, width, 3)")
    offsets = image.astype(np.float32) - np.float32(BACKGROUND)
    distances = np.linalg.norm(offsets, axis=2)
    labels, _ = ndimage.label(distances > FOREGROUND_MIN_DISTANCE, structure=_EIGHT_NEIGHBOURS)
    objects = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        obj = _measure_component(offsets, distances, labels, label, box)
        if obj is not None:
            objects.append(obj)
    return objects


def _measure_component(
    offsets: np.ndarray, distances: np.ndarray, labels: np.ndarray, label: int, box: tuple[slice, slice]
) -> DetectedObject | None:
    """Colour, matte, centre, box and shape of the component `label`; None if it is no object.

    offsets: (H, W, 3) pixel colours minus the background; distances: (H, W) their lengths.
    """
    height, width = labels.shape
    rows = slice(max(box[0].start - RIM_WIDTH, 0), min(box[0].stop + RIM_WIDTH, height))
    cols = slice(max(box[1].start - RIM_WIDTH, 0), min(box[1].stop + RIM_WIDTH, width))
    window_labels = labels[rows, cols]
    own = window_labels == label
    if own.sum() < MIN_OBJECT_AREA * height * width:
        return None
    window_offsets = offsets[rows, cols]
    color, color_offset = _component_color(window_offsets[own], distances[rows, cols][own])

    rim = ndimage.binary_dilation(own, _EIGHT_NEIGHBOURS, iterations=RIM_WIDTH) & ((window_labels == 0) | own)
    alpha = np.clip(window_offsets @ color_offset / (color_offset @ color_offset), 0, 1) * rim
    area = alpha.sum()
    center = (
        alpha.sum(axis=0) @ (np.arange(alpha.shape[1]) + 0.5) / area,
        alpha.sum(axis=1) @ (np.arange(alpha.shape[0]) + 0.5) / area,
    )
    grid_distances, box_sides = _shape_distances(alpha, center)
    best = int(np.argmin(grid_distances))
    if grid_distances[best] > SHAPE_MATCH_MAX_DISTANCE:
        return None
    return DetectedObject(
        shape=SHAPES[best],
        color=color,
        center=(float((cols.start + center[0]) / width), float((rows.start + center[1]) / height)),
        box_size=(float(box_sides[best] / width), float(box_sides[best] / height)),
        area=float(area / (height * width)),
    )


def _component_color(pixel_offsets: np.ndarray, pixel_distances: np.ndarray) -> tuple[str | None, np.ndarray]:
    """(palette name or None, colour minus background) of a component from its pixels' (N, 3) offsets."""
    strong = pixel_distances >= STRONG_PIXEL_FRACTION * pixel_distances.max()
    color_offset = np.median(pixel_offsets[strong], axis=0)
    palette_distances = np.linalg.norm(_PALETTE_OFFSETS - color_offset, axis=1)
    nearest = int(palette_distances.argmin())
    if palette_distances[nearest] > COLOR_MATCH_MAX_DISTANCE:
        return None, color_offset
    return _PALETTE_NAMES[nearest], _PALETTE_OFFSETS[nearest]


def _shape_distances(alpha: np.ndarray, center: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """How unlike each shape an object's matte is, and the box side each shape implies.

    alpha: (h, w) coverage of each pixel by the object; center: its centre of mass (x, y) in
    pixels of `alpha`. Each shape predicts the box from the mass and its centre, which blur
    leaves unchanged. Returns (distances, box sides in pixels), each (len(SHAPES),): the
    root-mean-square difference between the object's and the shape's cell coverages.
    """
    sides = np.sqrt(alpha.sum() / _FILL_RATIOS)
    cell_rows = _cell_overlaps(center[1] - sides * (0.5 + _CENTER_OF_MASS_DROPS), sides, alpha.shape[0])
    cell_cols = _cell_overlaps(center[0] - sides / 2, sides, alpha.shape[1])
    grids = (cell_rows @ alpha @ cell_cols.transpose(0, 2, 1)).reshape(len(SHAPES), -1)
    grids /= ((sides / GRID_CELLS) ** 2)[:, None]
    distances = np.sqrt(np.mean((grids - _shape_grids()) ** 2, axis=1))
    return distances, sides
