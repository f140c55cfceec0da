"""Finding the objects of a shapes-world image from its pixels alone, the way GenEval's detector would.

1. Background and foreground: the background colour is measured on the image (the median of the
   pixels near the image's median colour: `estimate_background`), not assumed, so a global
   brightness drift moves it with the objects. Foreground pixels are those whose colour, after a
   3 x 3 median (it removes pixel noise and keeps edges), is far from it. Colours are then offsets
   from the measured background, compared with the palette's offsets from the renderer's grey: a
   colour is named by its contrast with the background, unchanged by a global brightness shift.
2. Regions of one colour: seeds are foreground pixels whose whole 3 x 3 neighbourhood has the same
   nearest palette colour (the blends along the edge where two objects touch never qualify), every
   pixel joins its nearest seed, and touching regions of nearly the same colour merge (an
   off-palette colour may sit between two palette colours). Objects are thus separated from each
   other as well as from the background.
3. Colour: the median of a region's strongest pixels (those farthest from the background), named by
   the nearest palette colour when it is near enough.
4. Matte: each pixel's coverage by the object (alpha), from where its colour lies between the
   background and the colour measured on the object. It gives the area and the centre of mass to a
   fraction of a pixel, on antialiased or blurred edges alike.
5. Shape: for each shape, the box it would have given the object's mass and centre of mass (which
   blur leaves unchanged), and how much of each cell of a 7 x 7 grid over that box the object
   covers, compared with how much that shape covers at a few blur levels (a cross leaves the
   corners empty, a ring the centre, a triangle the top corners, ...). The closest shape is the
   object's class; its confidence weighs how close it is against how close the runner-up is, as a
   detector's class score would. A blob that fits no shape well is still an object, of low
   confidence.
6. The frame: a region that reaches all four borders or fills most of the image is background of
   another colour, not an object. An object cut by the border gets its box from its visible sides,
   and only the cells inside the image are compared.
7. Objects partly behind others: a region that fits no shape well and touches another region is
   fitted again as one cut by the frame is, its sides facing the neighbour cut and the cells under
   the neighbour not compared. That fit compares fewer cells, so it is kept only when it is better
   and confident (a JPEG speck beside an object fits any shape a little).
8. Touching objects of one colour: a region that still fits no shape well is split at the necks
   of its distance transform, and the parts are kept when each fits better than the whole.
"""

import functools

import numpy as np
from scipy import ndimage

from vhs.shapes.rules import MIN_CONFIDENCE, DetectedObject
from vhs.shapes.world import BACKGROUND, CENTER_OF_MASS_DROP, COLORS, SHAPES, shape_fill_ratio, shape_mask

# RGB distance from the background (after the 3 x 3 median) above which a pixel belongs to an
# object: well under the weakest palette colour's distance (purple, 107) even 45 RGB off its
# palette value, and far above Gaussian pixel noise of sigma 20 once the median has smoothed it.
FOREGROUND_MIN_DISTANCE = 30.0
# Times the background estimate is narrowed to the pixels near it (`estimate_background`).
BACKGROUND_REFINEMENTS = 1
# The background is estimated on a regular grid of about this many pixels (every pixel of a 32 x 32
# image, every other one of a 64 x 64 image): plenty for a median, and quick.
BACKGROUND_SAMPLES = 1024
# Regions smaller than this fraction of the image are noise (the smallest shape covers ~1.5 %).
MIN_OBJECT_AREA = 0.003
# Seed components smaller than this fraction of the image are blends between objects, not objects.
MIN_SEED_AREA = 0.002
# A region's colour is named only within this RGB distance of a palette colour. Palette colours are
# >= 100 apart; a colour 45 off in each channel lies up to 78 from its own.
COLOR_MATCH_MAX_DISTANCE = 90.0
# Touching regions whose colours are closer than this are one object (palette colours are >= 100 apart).
MERGE_MAX_COLOR_DISTANCE = 50.0
# Pixels at least this fraction of the region's largest distance from the background count as
# its "strongest" pixels, the ones that show its colour unmixed.
STRONG_PIXEL_FRACTION = 0.75
# The matte takes in pixels up to this many pixels beyond the region: the faint edge that
# antialiasing and blur leave below the threshold.
RIM_WIDTH = 3
# The box is cut in GRID_CELLS x GRID_CELLS cells; shapes are told apart by how much of each cell
# they cover. Seven cells resolve the cross's arms and the ring's hole at 11 pixels.
GRID_CELLS = 7
# Blur levels of the ideal coverages, as Gaussian sigmas in box sides (sigma 2 px on an 11 px box is 0.18).
TEMPLATE_BLURS = (0.0, 0.04, 0.08, 0.12, 0.16, 0.2)
# Templates up to this much blurrier (in box sides) than the blur measured on an object's edges are tried.
BLUR_MARGIN = 0.05
# The colour measured on a thin blurred object (a ring's band) is weaker than the one drawn, which
# inflates its matte; the fit also tries the matte scaled down by those of these factors that the
# measured colour's strength allows (`_matte_scales`) and keeps the best.
ALPHA_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
# The matte is a least-squares projection of each pixel's colour onto the object's. In a clean
# image it weighs luma LUMA_WEIGHT times more than chroma, in YCbCr: JPEG keeps luma at full
# resolution and blurs chroma, so an object's luma edge is the sharper one. In a noisy image
# (pixel noise above NOISY_PIXEL_SIGMA, estimated on the background) every channel is as sharp and
# the plain RGB projection has the least noise.
LUMA_WEIGHT = 3.0
NOISY_PIXEL_SIGMA = 3.0
# A region reaching all four borders, or covering more than this fraction of the image, is not an
# object (the largest object covers < 10 %).
MAX_OBJECT_AREA = 0.4
# An object whose matte reaches this alpha on the outermost row or column is cut by the frame; it
# is an object only when at least MIN_VISIBLE_SHARE of the shape its visible part implies is inside.
CUT_ALPHA = 0.5
MIN_VISIBLE_SHARE = 0.5
# A region's side faces the neighbour it touches when the pixels where they touch lie beyond its
# centre on that side by more than this fraction of its half extent.
HIDDEN_SIDE_OFFSET = 0.5
# Below this confidence a region is split when it may hold two touching objects of one colour.
SPLIT_BELOW_CONFIDENCE = 0.5
# The best shape's distance at which the fit part of the confidence reaches 0.
SHAPE_FIT_SCALE = 0.4
# How fast a shape's share of the class score falls with its distance beyond the best shape's.
CLASS_TEMPERATURE = 0.03

_PALETTE_NAMES = tuple(COLORS)
_PALETTE = np.array([COLORS[name] for name in _PALETTE_NAMES], np.float32)
_PALETTE_DIRECTIONS = (_PALETTE - np.float32(BACKGROUND)) / np.linalg.norm(
    _PALETTE - np.float32(BACKGROUND), axis=1, keepdims=True
)
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]], np.float32)
_SHARP_LUMA_METRIC = _RGB_TO_YCBCR.T @ np.diag([LUMA_WEIGHT**2, 1, 1]).astype(np.float32) @ _RGB_TO_YCBCR
_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)
_FOUR_NEIGHBOURS = ndimage.generate_binary_structure(2, 1)
_FILL_RATIOS = np.array([shape_fill_ratio(shape) for shape in SHAPES])
_CENTER_OF_MASS_DROPS = np.array([CENTER_OF_MASS_DROP[shape] for shape in SHAPES])


@functools.cache
def _shape_grids() -> np.ndarray:
    """Each shape's ideal coverage of the cells of its box at each blur of TEMPLATE_BLURS:
    (len(SHAPES), len(TEMPLATE_BLURS), GRID_CELLS²). The outer cells reach to infinity, as in
    `_cell_overlaps`, so what blur spreads beyond the box stays in them."""
    samples_per_cell, pad_cells = 12, 4
    samples = (GRID_CELLS + 2 * pad_cells) * samples_per_cell
    box_samples = GRID_CELLS * samples_per_cell
    points = (np.arange(samples) - pad_cells * samples_per_cell + 0.5) / (box_samples / 2) - 1
    cell_of_sample = np.clip(
        (np.arange(samples) - pad_cells * samples_per_cell) // samples_per_cell, 0, GRID_CELLS - 1
    )
    to_cells = (cell_of_sample[None, :] == np.arange(GRID_CELLS)[:, None]).astype(np.float64)
    grids = np.empty((len(SHAPES), len(TEMPLATE_BLURS), GRID_CELLS**2))
    for i, shape in enumerate(SHAPES):
        inside = shape_mask(shape, points[None, :], points[:, None]).astype(np.float64)
        for j, blur in enumerate(TEMPLATE_BLURS):
            blurred = ndimage.gaussian_filter(inside, blur * box_samples, mode="constant") if blur else inside
            grids[i, j] = (to_cells @ blurred @ to_cells.T).ravel() / samples_per_cell**2
    return grids


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


def estimate_background(smoothed: np.ndarray) -> np.ndarray:
    """(3,) float32: the background colour of an image from its pixels after the 3 x 3 median.

    The per-channel median of the image starts the estimate (the background covers most of the
    image: all objects together cover well under half), then the estimate becomes the median of
    the pixels within FOREGROUND_MIN_DISTANCE of it, so objects no longer pull it. On a clean
    render most of those pixels are exactly the background, and so is their median. A brightness
    drift, a grey other than the renderer's, or a frame-filling colour (then no object is found)
    are all measured rather than assumed.
    """
    step = max(1, round(np.sqrt(smoothed.shape[0] * smoothed.shape[1] / BACKGROUND_SAMPLES)))
    samples = smoothed[::step, ::step].reshape(-1, 3)
    background = np.median(samples, axis=0)
    for _ in range(BACKGROUND_REFINEMENTS):
        near = samples[((samples - background) ** 2).sum(axis=1) <= FOREGROUND_MIN_DISTANCE**2]
        if not len(near):
            break
        background = np.median(near, axis=0)
    return background.astype(np.float32)


def detect_objects(image: np.ndarray) -> list[DetectedObject]:
    """The objects of an image, in no particular order, each with its class confidence.

    image: uint8 (H, W, 3) RGB. An object whose colour matches no palette colour is reported with
    color None; one whose shape matches no shape well is reported with its closest shape and a low
    confidence.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image shape {image.shape} must be (height, width, 3)")
    pixels = image.astype(np.float32)
    smoothed = ndimage.median_filter(pixels, size=(3, 3, 1))
    background = estimate_background(smoothed)
    offsets, smoothed_offsets = pixels - background, smoothed - background
    foreground = np.linalg.norm(smoothed_offsets, axis=2) > FOREGROUND_MIN_DISTANCE
    background_residuals = (pixels - smoothed)[~foreground]
    noisy = background_residuals.size and 1.4826 * np.median(np.abs(background_residuals)) > NOISY_PIXEL_SIGMA
    matte_metric = np.eye(3, dtype=np.float32) if noisy else _SHARP_LUMA_METRIC
    regions, owner = _color_regions(smoothed_offsets, foreground)
    objects = []
    for label in np.unique(regions[regions > 0]):
        region, owned = regions == label, owner == label
        found = _measure_region(offsets, smoothed_offsets, region, owned, matte_metric)
        if found is not None and found.confidence < SPLIT_BELOW_CONFIDENCE:
            hidden = _touching_regions(regions, label)
            if hidden.any():  # perhaps partly behind a neighbour: fit only what is not under it
                behind = _measure_region(offsets, smoothed_offsets, region, owned, matte_metric, hidden)
                if behind is not None and behind.confidence > max(found.confidence, MIN_CONFIDENCE):
                    found = behind
        if found is not None and found.confidence < SPLIT_BELOW_CONFIDENCE:
            parts = [
                _measure_region(offsets, smoothed_offsets, part, owned & basin, matte_metric)
                for part, basin in _split(region)
            ]
            if parts and all(part is not None and part.confidence > found.confidence for part in parts):
                objects.extend(parts)
                continue
        if found is not None:
            objects.append(found)
    return objects


def _color_regions(smoothed_offsets: np.ndarray, foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regions, owner), both int (H, W): regions labels each foreground pixel with its object
    region (0: background); owner labels every pixel with the region of its nearest foreground pixel.

    A pixel's colour class is the palette colour whose direction from the background is nearest
    its own: an antialiased or blurred edge (a mix of the object and the background) keeps its
    object's class, where the nearest colour would name the mix (black's edge is brown)."""
    height, width = foreground.shape
    directions = smoothed_offsets / np.maximum(np.linalg.norm(smoothed_offsets, axis=2, keepdims=True), 1e-6)
    classes = np.where(foreground, (directions @ _PALETTE_DIRECTIONS.T).argmax(axis=2), -1)
    uniform = ndimage.minimum_filter(classes, footprint=_FOUR_NEIGHBOURS) == ndimage.maximum_filter(
        classes, footprint=_FOUR_NEIGHBOURS
    )
    seeds = uniform & (classes >= 0)
    # Two seeds of different classes are never 4-neighbours, so one labelling separates the classes.
    seed_labels, count = ndimage.label(seeds, _FOUR_NEIGHBOURS)
    large = ndimage.sum_labels(seeds, seed_labels, np.arange(1, count + 1)) >= MIN_SEED_AREA * height * width
    seed_labels = np.concatenate([[0], np.cumsum(large) * large])[seed_labels]
    next_label = int(seed_labels.max()) + 1
    regions = np.zeros(foreground.shape, int)
    components, _ = ndimage.label(foreground, _EIGHT_NEIGHBOURS)
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        component = components[box] == label
        component_seeds = np.where(component, seed_labels[box], 0)
        if component_seeds.any():
            # Each pixel joins the nearest seed of its own component.
            _, (rows, cols) = ndimage.distance_transform_edt(component_seeds == 0, return_indices=True)
            regions[box][component] = component_seeds[rows, cols][component]
        else:
            regions[box][component] = next_label  # too thin for a seed: one region as it stands
            next_label += 1
    if not regions.any():
        return regions, regions
    regions = _merge_similar(regions, smoothed_offsets)
    _, (rows, cols) = ndimage.distance_transform_edt(regions == 0, return_indices=True)
    return regions, regions[rows, cols]


def _merge_similar(regions: np.ndarray, smoothed_offsets: np.ndarray) -> np.ndarray:
    """regions with touching regions of nearly the same colour (the median of their strongest
    pixels) given one label. Regions touch where their pixels are 4-neighbours."""
    labels = np.unique(regions[regions > 0])
    colors = {label: _strongest_color(smoothed_offsets[regions == label]) for label in labels}
    parent = {label: label for label in labels}

    def root(label: int) -> int:
        while parent[label] != label:
            label = parent[label]
        return label

    pairs = set()
    for a, b in ((regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])):
        differ = (a != b) & (a > 0) & (b > 0)
        pairs.update(zip(a[differ].tolist(), b[differ].tolist(), strict=True))
    for a, b in pairs:
        if np.linalg.norm(colors[a] - colors[b]) < MERGE_MAX_COLOR_DISTANCE:
            parent[root(a)] = root(b)
    lookup = np.zeros(regions.max() + 1, int)
    for label in labels:
        lookup[label] = root(label)
    return lookup[regions]


def _measure_region(
    offsets: np.ndarray,
    smoothed_offsets: np.ndarray,
    region: np.ndarray,
    owned: np.ndarray,
    matte_metric: np.ndarray,
    hidden: np.ndarray | None = None,
) -> DetectedObject | None:
    """The object of one region, or None when it is no object (a speck, or the frame's background).

    offsets / smoothed_offsets: (H, W, 3) pixel colours (raw / after the median) minus the
    background; region: (H, W) bool, its foreground pixels; owned: (H, W) bool, the pixels nearer to
    it than to any other region (its matte may reach into them); matte_metric: (3, 3), the inner
    product of colours the matte's projection uses; hidden: (H, W) bool or None, the pixels of
    neighbouring objects that may hide part of this one. Given, the object is fitted as one cut by
    the frame is, its sides facing them cut too, and the cells under them are not compared.
    """
    height, width = region.shape
    area = int(region.sum())
    rows, cols = np.nonzero(region)
    fills_frame = rows.min() == 0 and cols.min() == 0 and rows.max() == height - 1 and cols.max() == width - 1
    if area < MIN_OBJECT_AREA * height * width or area > MAX_OBJECT_AREA * height * width or fills_frame:
        return None
    color, color_offset = _region_color(smoothed_offsets[region])
    support = owned & ndimage.binary_dilation(region, _EIGHT_NEIGHBOURS, iterations=RIM_WIDTH)
    weighted = color_offset @ matte_metric
    alpha = np.clip(offsets @ weighted / (weighted @ color_offset), -0.25, 1.25) * support
    cut = _cut_sides(alpha)
    if hidden is not None:
        cut = tuple(a or b for a, b in zip(cut, _hidden_sides(region, hidden), strict=True))
    scales = _matte_scales(color_offset)
    blurs = _plausible_blurs(alpha)
    if any(cut) or hidden is not None:
        fits = [_fit_cut_shapes(alpha * scale, cut, blurs, hidden) for scale in scales]
        boxes, distances = min(fits, key=lambda fit: fit[1].min())
    else:
        # Fitting a window around the object instead of the whole image: the same sums, fewer zeros.
        rows, cols = np.nonzero(support)
        top, left = rows.min(), cols.min()
        boxes, distances = _fit_shapes(alpha[top : rows.max() + 1, left : cols.max() + 1], scales, blurs)
        boxes = boxes + [left, top, 0]
    best, confidence = _classify(distances)
    left, top, side = boxes[best]
    if any(cut) and _visible_share(SHAPES[best], left, top, side, region.shape) < MIN_VISIBLE_SHARE:
        return None
    return DetectedObject(
        shape=SHAPES[best],
        color=color,
        center=(float((left + side / 2) / width), float((top + side / 2) / height)),
        box_size=(float(side / width), float(side / height)),
        area=float(np.clip(alpha, 0, 1).sum() / (height * width)),
        confidence=confidence,
    )


def _strongest_color(pixel_offsets: np.ndarray) -> np.ndarray:
    """(3,): the median offset from the background of the strongest of (N, 3) pixel offsets, the
    ones that show the colour unmixed with the background."""
    distances = np.linalg.norm(pixel_offsets, axis=1)
    return np.median(pixel_offsets[distances >= STRONG_PIXEL_FRACTION * distances.max()], axis=0)


def _region_color(pixel_offsets: np.ndarray) -> tuple[str | None, np.ndarray]:
    """(palette name or None, colour minus background) of a region from its pixels' (N, 3) offsets.

    The colour is the one measured, not the palette colour it is named after: the matte of an
    object drawn 40 RGB off its palette colour must still reach alpha 1 inside it."""
    color_offset = _strongest_color(pixel_offsets)
    palette_distances = np.linalg.norm(_PALETTE - np.float32(BACKGROUND) - color_offset, axis=1)
    nearest = int(palette_distances.argmin())
    name = _PALETTE_NAMES[nearest] if palette_distances[nearest] <= COLOR_MATCH_MAX_DISTANCE else None
    return name, color_offset


def _plausible_blurs(alpha: np.ndarray) -> np.ndarray:
    """(len(TEMPLATE_BLURS),) bool: the template blurs no sharper than the object's edges allow.

    Blur is measured, not guessed from the shape: across an edge blurred by a Gaussian of sigma
    pixels, about 2.5 sigma pixels lie between alpha 0.15 and 0.85. Without this bound a rounded
    square or a plump cross fits a blurred diamond as well as its own shape, though its edges are
    sharp."""
    inside = alpha > 0.5
    edge_pixels = (inside & ~ndimage.binary_erosion(inside, _FOUR_NEIGHBOURS)).sum()
    partial_pixels = ((alpha > 0.15) & (alpha < 0.85)).sum()
    sigma = partial_pixels / max(edge_pixels, 1) / 2.5
    side = np.sqrt(max(inside.sum(), 1))
    return np.array(TEMPLATE_BLURS) <= sigma / side + BLUR_MARGIN


def _matte_scales(color_offset: np.ndarray) -> tuple[float, ...]:
    """The factors of ALPHA_SCALES the matte may shrink by: only as far as the measured colour is
    weaker than the palette colour in its direction (a thin object blurred into the background); a
    colour measured at full strength was drawn at that strength, and its matte stays as it is."""
    strength = np.linalg.norm(color_offset)
    nearest = int(np.argmax(_PALETTE_DIRECTIONS @ (color_offset / max(strength, 1e-6))))
    ratio = strength / np.linalg.norm(_PALETTE[nearest] - np.float32(BACKGROUND))
    return tuple(scale for scale in ALPHA_SCALES if scale >= ratio - 0.05) or (1.0,)


def _cut_sides(alpha: np.ndarray) -> tuple[bool, bool, bool, bool]:
    """Whether the object of matte `alpha` (H, W) is cut by the (left, top, right, bottom) border."""
    return (
        alpha[:, 0].max() >= CUT_ALPHA,
        alpha[0, :].max() >= CUT_ALPHA,
        alpha[:, -1].max() >= CUT_ALPHA,
        alpha[-1, :].max() >= CUT_ALPHA,
    )


def _fit_shapes(
    alpha: np.ndarray, scales: tuple[float, ...], blurs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (len(SHAPES), 3: left, top, side in pixels) and distances (len(SHAPES),
    len(TEMPLATE_BLURS)) of an object wholly inside the image: each shape's box follows from the
    object's mass and centre of mass, and its distance at each blur is the root-mean-square
    difference between the object's cell coverages and the shape's, at the blurs of TEMPLATE_BLURS
    selected by `blurs` (bool). The matte scaled by each of `scales` is tried at once; the one that
    fits best is returned."""
    scales = np.array(scales)[:, None]
    mass = max(alpha.sum(), 1e-6)
    center_x = alpha.sum(axis=0) @ (np.arange(alpha.shape[1]) + 0.5) / mass
    center_y = alpha.sum(axis=1) @ (np.arange(alpha.shape[0]) + 0.5) / mass
    sides = np.sqrt(scales * mass / _FILL_RATIOS)  # (scales, shapes)
    lefts = center_x - sides / 2
    tops = center_y - sides * (0.5 + _CENTER_OF_MASS_DROPS)
    grids = _cell_coverages(alpha, lefts.ravel(), tops.ravel(), sides.ravel()).reshape(*sides.shape, -1)
    grids *= scales[:, :, None]
    distances = np.sqrt(np.mean((grids[:, :, None, :] - _shape_grids()[:, blurs]) ** 2, axis=3))
    scale = int(np.argmin(distances.min(axis=(1, 2))))
    return np.stack([lefts[scale], tops[scale], sides[scale]], axis=1), distances[scale]


def _touching_regions(regions: np.ndarray, label: int) -> np.ndarray:
    """(H, W) bool: the pixels of the regions that touch region `label` (8-neighbours)."""
    region = regions == label
    near = regions[ndimage.binary_dilation(region, _EIGHT_NEIGHBOURS)]
    neighbours = np.unique(near[(near > 0) & (near != label)])
    return np.isin(regions, neighbours) if len(neighbours) else np.zeros_like(region)


def _hidden_sides(region: np.ndarray, hidden: np.ndarray) -> tuple[bool, bool, bool, bool]:
    """Whether the (left, top, right, bottom) side of a region may be hidden by the pixels
    `hidden`: the pixels where they touch lie on that side of the region's centre, by more than
    HIDDEN_SIDE_OFFSET of its half extent."""
    contact = region & ndimage.binary_dilation(hidden, _EIGHT_NEIGHBOURS)
    if not contact.any():
        return (False, False, False, False)
    rows, cols = np.nonzero(region)
    contact_rows, contact_cols = np.nonzero(contact)
    sides = []
    for coordinates, contact_coordinates in ((cols, contact_cols), (rows, contact_rows)):
        low, high = coordinates.min(), coordinates.max()
        offset = (contact_coordinates.mean() - (low + high) / 2) / max((high - low) / 2, 1)
        sides.append((offset < -HIDDEN_SIDE_OFFSET, offset > HIDDEN_SIDE_OFFSET))
    (left, right), (top, bottom) = sides
    return left, top, right, bottom


def _fit_cut_shapes(
    alpha: np.ndarray,
    cut: tuple[bool, bool, bool, bool],
    blurs: np.ndarray,
    hidden: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """As `_fit_shapes`, for an object cut by the border: mass and centre of mass are those of the
    visible part only, so the box comes from the visible sides (where the matte crosses 0.5; every
    shape spans its whole box), its side from an axis the border does not cut (or, cut at a corner,
    the best of a few sides), and only the cells' visible parts are compared. Pixels of `hidden`
    ((H, W) bool or None) are no more visible than those beyond the frame."""
    extents = []
    for axis_profile, low_cut, high_cut in (
        (alpha.max(axis=0), cut[0], cut[2]),
        (alpha.max(axis=1), cut[1], cut[3]),
    ):
        inside = np.nonzero(axis_profile >= 0.5)[0]
        low, high = (inside[0], inside[-1] + 1) if len(inside) else (0, len(axis_profile))
        extents.append((float(low), float(high), low_cut, high_cut))
    uncut = [high - low for low, high, low_cut, high_cut in extents if not (low_cut or high_cut)]
    longest = max(high - low for low, high, _, _ in extents)
    candidate_sides = uncut[:1] or [longest * factor for factor in (1.0, 1.15, 1.3, 1.5, 1.7)]
    best_boxes, best_distances = None, None
    for side in candidate_sides:
        starts = [
            high - side if low_cut and not high_cut else low for low, high, low_cut, high_cut in extents
        ]
        left, top = starts
        sides = np.full(len(SHAPES), side)
        grids = _cell_coverages(alpha, np.full(len(SHAPES), left), np.full(len(SHAPES), top), sides)
        visible = np.outer(
            _visible_fraction(top, side, alpha.shape[0]), _visible_fraction(left, side, alpha.shape[1])
        )
        if hidden is not None:
            visible = visible - _hidden_fraction(hidden, left, top, side)
        used = visible.ravel() > 0.3
        expected = _shape_grids()[:, blurs] * visible.ravel()
        differences = (grids[:, None, :] - expected)[:, :, used]
        distances = np.sqrt(np.mean(differences**2, axis=2))
        if best_distances is None or distances.min() < best_distances.min():  # the side that fits best
            best_boxes = np.stack([np.full(len(SHAPES), left), np.full(len(SHAPES), top), sides], axis=1)
            best_distances = distances
    return best_boxes, best_distances


def _visible_share(shape: str, left: float, top: float, side: float, image_shape: tuple[int, int]) -> float:
    """The fraction of a shape's area inside the image, for its box at (left, top) of `side` pixels."""
    samples = (np.arange(64) + 0.5) / 32 - 1
    xs, ys = left + (samples + 1) * side / 2, top + (samples + 1) * side / 2
    inside = shape_mask(shape, samples[None, :], samples[:, None])
    in_frame = ((ys >= 0) & (ys < image_shape[0]))[:, None] & ((xs >= 0) & (xs < image_shape[1]))[None, :]
    return float((inside & in_frame).sum() / inside.sum())


def _hidden_fraction(hidden: np.ndarray, left: float, top: float, side: float) -> np.ndarray:
    """(GRID_CELLS, GRID_CELLS): the fraction of each cell of the box at (left, top) of `side`
    pixels that the pixels of `hidden` ((H, W) bool) cover."""
    cell_edges = np.arange(GRID_CELLS + 1) / GRID_CELLS * side
    overlaps = []
    for start, num_pixels in ((top, hidden.shape[0]), (left, hidden.shape[1])):
        edges, pixels = start + cell_edges, np.arange(num_pixels)
        overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
        overlaps.append(np.clip(overlap, 0, None))
    return overlaps[0] @ hidden @ overlaps[1].T / (side / GRID_CELLS) ** 2


def _visible_fraction(start: float, side: float, num_pixels: int) -> np.ndarray:
    """(GRID_CELLS,): the fraction of each cell of [start, start + side) inside [0, num_pixels)."""
    edges = start + side * np.arange(GRID_CELLS + 1) / GRID_CELLS
    inside = np.clip(np.minimum(edges[1:], num_pixels) - np.maximum(edges[:-1], 0), 0, None)
    return inside / (side / GRID_CELLS)


def _cell_coverages(alpha: np.ndarray, lefts: np.ndarray, tops: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """(n, GRID_CELLS²): the matte's mass in each cell of n boxes, over the cell's area."""
    cell_rows = _cell_overlaps(tops, sides, alpha.shape[0])
    cell_cols = _cell_overlaps(lefts, sides, alpha.shape[1])
    grids = (cell_rows @ alpha @ cell_cols.transpose(0, 2, 1)).reshape(len(sides), -1)
    return grids / ((sides / GRID_CELLS) ** 2)[:, None]


def _classify(distances: np.ndarray) -> tuple[int, float]:
    """(index into SHAPES, confidence in [0, 1]) from the (len(SHAPES), len(TEMPLATE_BLURS))
    distances of an object's cell coverages to each shape's at each blur.

    The best (shape, blur) pair names the shape and the blur the image has; the runner-up is the
    best other shape at that same blur (blur is the image's, not a hypothesis': a heavily blurred
    circle template would otherwise pass for any blurred ring). The confidence is high when the
    best shape fits well and clearly better than the runner-up: a rendered shape lies <= 0.06 from
    its own coverages and >= 0.16 from any other's; a blob that fits two shapes equally, or none,
    scores near 0."""
    shape, blur = np.unravel_index(np.argmin(distances), distances.shape)
    best = distances[shape, blur]
    likelihoods = np.exp(-(distances[:, blur] - best) / CLASS_TEMPERATURE)
    fit = max(0.0, 1 - best / SHAPE_FIT_SCALE)
    return int(shape), float(fit / likelihoods.sum())


def _split(region: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(part, cell)]: a region cut between the peaks of its distance transform (two touching circles
    have two), each pixel going to the peak whose inscribed disc's edge is nearest (so the cut runs
    through the neck between unequal objects); cell: the pixels of the image nearest that peak.
    [] with one peak or with more than four (a ring's ridge is no set of objects)."""
    depth = ndimage.distance_transform_edt(region)
    peaks = (depth == ndimage.maximum_filter(depth, size=5)) & (depth >= max(2.0, depth.max() / 2))
    markers, count = ndimage.label(peaks, _EIGHT_NEIGHBOURS)
    if not 2 <= count <= 4:
        return []
    index = np.arange(1, count + 1)
    centers = np.array(ndimage.center_of_mass(peaks, markers, index))
    radii = np.asarray(ndimage.maximum(depth, markers, index))
    rows, cols = np.indices(region.shape)
    edge_distances = np.hypot(rows[..., None] - centers[:, 0], cols[..., None] - centers[:, 1]) - radii
    cells = edge_distances.argmin(axis=2)
    return [(region & (cells == k), cells == k) for k in range(count)]
