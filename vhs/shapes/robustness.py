"""How often the evaluator's verdict from pixels agrees with the verdict by construction, on images
drawn the way generators draw them: blurred, noisy, off-palette, compressed, ragged, crowded, cut by
the frame; and on images that show no object at all.

Each case is a rendered scene, a prompt and the verdict of GenEval's rules on the scene's own
objects (the label by construction). Half the scenes are made for their prompt and half are near
misses, so agreement measures both passing and failing. All randomness comes from the seed.

    python -m vhs.shapes.robustness [--cases 500]      # the README's agreement table
"""

import argparse
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from tqdm import tqdm

from vhs.shapes.evaluate import evaluate
from vhs.shapes.prompt_sets import sample_training_prompt
from vhs.shapes.prompts import TASKS, PromptSpec
from vhs.shapes.rules import check_objects, ground_truth_objects
from vhs.shapes.scenes import MISTAKES, near_miss_scene, scene_for_prompt
from vhs.shapes.world import BACKGROUND, COLORS, SHAPES, Scene, SceneObject, render_scene, shape_mask

IMAGE_SIZE = 64  # the shapes generator's resolution


@dataclass(frozen=True)
class Case:
    """One image, the prompt it is judged against, and the verdict by construction."""

    image: np.ndarray
    spec: PromptSpec
    expected: bool
    scene: Scene

    @classmethod
    def of(cls, scene: Scene, image: np.ndarray, spec: PromptSpec) -> "Case":
        """The case of a scene drawn as `image`, labelled by GenEval's rules on its own objects."""
        return cls(image, spec, check_objects(ground_truth_objects(scene), spec)[0], scene)


def _blur(radius: float) -> Callable:
    def perturb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))

    return perturb


def _noise(sigma: float) -> Callable:
    def perturb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(np.round(image + rng.normal(0, sigma, image.shape)), 0, 255).astype(np.uint8)

    return perturb


def _brightness(shift: int) -> Callable:
    """Every pixel, background and objects alike, `shift` RGB brighter in each channel (clipped):
    a generator whose exposure drifts."""

    def perturb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(image.astype(np.int16) + shift, 0, 255).astype(np.uint8)

    return perturb


def _jpeg(image: np.ndarray, rng: np.random.Generator, quality: int = 50) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _edge_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Edges moved in and out by up to 1 pixel: the image resampled along a smooth random
    displacement field whose largest displacement is 1 pixel (wobbly outlines, as generators draw)."""
    size = image.shape[0]
    field = ndimage.gaussian_filter(rng.normal(size=(2, size, size)), (0, 2, 2))
    field /= np.abs(field).max()
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    coordinates = [rows + field[0], cols + field[1]]
    channels = [
        ndimage.map_coordinates(image[..., c].astype(np.float64), coordinates, order=1, mode="nearest")
        for c in range(3)
    ]
    return np.clip(np.round(np.stack(channels, axis=2)), 0, 255).astype(np.uint8)


def off_palette_colors(scene: Scene, max_offset: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Each object's palette colour moved by up to `max_offset` RGB per channel, uniformly, kept
    nearer its own palette colour than any other by 20 (else the label itself would be in doubt)."""
    palette = {name: np.array(rgb, np.float64) for name, rgb in COLORS.items()}
    colors = []
    for obj in scene.objects:
        while True:
            rgb = np.clip(palette[obj.color] + rng.uniform(-max_offset, max_offset, 3), 0, 255)
            own = np.linalg.norm(rgb - palette[obj.color])
            others = min(np.linalg.norm(rgb - value) for name, value in palette.items() if name != obj.color)
            if own + 20 <= others:
                colors.append(rgb)
                break
    return colors


def _prompt_cases(
    count: int,
    rng: np.random.Generator,
    perturb: Callable | None = None,
    size: int = IMAGE_SIZE,
    color_offset=0.0,
) -> list[Case]:
    """Scenes for random training prompts of every task, half right and half near misses."""
    cases = []
    for index in range(count):
        spec = sample_training_prompt(rng) if index % len(TASKS) else _single_object_prompt(rng)
        if index % 2:
            mistakes = MISTAKES[spec.tag]
            scene = near_miss_scene(spec, rng, mistakes[rng.integers(len(mistakes))])
        else:
            scene = scene_for_prompt(spec, rng)
        colors = off_palette_colors(scene, color_offset, rng) if color_offset else None
        image = render_scene(scene, size, colors)
        if perturb is not None:
            image = perturb(image, rng)
        cases.append(Case.of(scene, image, spec))
    return cases


def _single_object_prompt(rng: np.random.Generator) -> PromptSpec:
    # Every single-object prompt is held out from training; they are the simplest test here.
    return PromptSpec.single_object(SHAPES[rng.integers(len(SHAPES))])


def _pair_specs(a: SceneObject, b: SceneObject) -> list[PromptSpec]:
    """Prompts about a pair of objects, A left of (or above) B, that it passes and fails."""
    if a.shape == b.shape:
        # Which of two equal shapes a colour or position clause takes depends on the detector's
        # confidence order, so only counts are certain by construction.
        return [PromptSpec.counting(a.shape, 2), PromptSpec.counting(a.shape, 3)]
    relation = "left of" if abs(a.x - b.x) > abs(a.y - b.y) else "above"
    opposite = {"left of": "right of", "above": "below"}[relation]
    return [
        PromptSpec.two_object(a.shape, b.shape),
        PromptSpec.position(a.shape, relation, b.shape),
        PromptSpec.position(a.shape, opposite, b.shape),
        PromptSpec.colors(a.color, a.shape),
        PromptSpec.colors(b.color, b.shape),
        PromptSpec.color_attr((a.color, a.shape), (b.color, b.shape)),
        PromptSpec.color_attr((b.color, a.shape), (a.color, b.shape)),
    ]


def _pair_cases(
    count: int,
    rng: np.random.Generator,
    gap_pixels: tuple[float, float],
    same_color: bool = False,
    blur: float = 0,
) -> list[Case]:
    """Two objects side by side or stacked, `gap_pixels` (a range; negative: overlapping) apart."""
    cases = []
    colors = tuple(COLORS)
    for _ in range(count):
        size_a, size_b = rng.uniform(0.17, 0.3, 2)
        color_a = colors[rng.integers(len(colors))]
        color_b = (
            color_a if same_color else colors[(colors.index(color_a) + rng.integers(1, len(colors))) % 10]
        )
        gap = rng.uniform(*gap_pixels) / IMAGE_SIZE
        distance = (size_a + size_b) / 2 + gap
        start = rng.uniform(0.05 + size_a / 2, 0.95 - size_b / 2 - distance)
        across = rng.uniform(0.05 + max(size_a, size_b) / 2, 0.95 - max(size_a, size_b) / 2)
        shape_a, shape_b = SHAPES[rng.integers(len(SHAPES))], SHAPES[rng.integers(len(SHAPES))]
        if rng.random() < 0.5:
            a = SceneObject(shape_a, color_a, start, across, size_a)
            b = SceneObject(shape_b, color_b, start + distance, across, size_b)
        else:
            a = SceneObject(shape_a, color_a, across, start, size_a)
            b = SceneObject(shape_b, color_b, across, start + distance, size_b)
        scene = Scene((a, b))
        image = render_scene(scene)
        if blur:
            image = _blur(blur)(image, rng)
        specs = _pair_specs(a, b)
        spec = specs[rng.integers(len(specs))]
        cases.append(Case.of(scene, image, spec))
    return cases


def _outside_depth(shape: str, fraction: float, side: int) -> float:
    """How far (in half box sides) a shape's box must reach past the border on `side` (0 left,
    1 top, 2 right, 3 bottom) for `fraction` of its area to lie outside."""
    samples = (np.arange(400) + 0.5) / 200 - 1
    inside = shape_mask(shape, samples[None, :], samples[:, None])
    profile = inside.sum(axis=0 if side in (0, 2) else 1)  # area per column or per row
    profile = profile if side in (0, 1) else profile[::-1]  # counted from that border inwards
    return float(samples[np.searchsorted(np.cumsum(profile) / profile.sum(), fraction)] + 1)


def _cut_cases(count: int, rng: np.random.Generator) -> list[Case]:
    """One object with 30-45 % of its area outside the frame, on a random side."""
    cases = []
    colors = tuple(COLORS)
    for _ in range(count):
        shape, color = SHAPES[rng.integers(len(SHAPES))], colors[rng.integers(len(colors))]
        size = rng.uniform(0.2, 0.3)
        side = int(rng.integers(4))
        depth = _outside_depth(shape, rng.uniform(0.3, 0.45), side)
        inset = (1 - depth) * size / 2  # box centre's distance from the border it crosses
        across = rng.uniform(0.05 + size / 2, 0.95 - size / 2)
        x, y = [(inset, across), (across, inset), (1 - inset, across), (across, 1 - inset)][side]
        scene = Scene((SceneObject(shape, color, x, y, size),))
        other_shape = SHAPES[(SHAPES.index(shape) + rng.integers(1, len(SHAPES))) % len(SHAPES)]
        other_color = colors[(colors.index(color) + rng.integers(1, len(colors))) % len(colors)]
        specs = [
            PromptSpec.single_object(shape),
            PromptSpec.single_object(other_shape),
            PromptSpec.colors(color, shape),
            PromptSpec.colors(other_color, shape),
            PromptSpec.counting(shape, 2),
        ]
        spec = specs[rng.integers(len(specs))]
        cases.append(Case.of(scene, render_scene(scene), spec))
    return cases


def _empty_cases(count: int, rng: np.random.Generator, kind: str) -> list[Case]:
    """Images with no object, judged against random prompts (which all need an object)."""
    cases = []
    colors = list(COLORS.values())
    for _ in range(count):
        if kind == "blank":
            image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), BACKGROUND, np.uint8)
        elif kind == "noise":
            if rng.random() < 0.5:
                noise = rng.normal(BACKGROUND, rng.uniform(20, 80), (IMAGE_SIZE, IMAGE_SIZE, 3))
            else:
                noise = rng.uniform(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3))
            image = np.clip(np.round(noise), 0, 255).astype(np.uint8)
        else:
            rgb = colors[rng.integers(len(colors))] if rng.random() < 0.5 else rng.integers(0, 256, 3)
            image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), rgb, np.uint8)
        spec = sample_training_prompt(rng) if rng.random() < 0.8 else _single_object_prompt(rng)
        cases.append(Case(image, spec, False, Scene(())))
    return cases


# name -> (cases(count, rng), required agreement: 1.0 exact, 0.98, or None: reported only).
KINDS: dict[str, tuple[Callable, float | None]] = {
    "clean, 64 px": (lambda n, rng: _prompt_cases(n, rng), 1.0),
    "clean, 128 px": (lambda n, rng: _prompt_cases(n, rng, size=128), 1.0),
    "blur 0.5 px": (lambda n, rng: _prompt_cases(n, rng, _blur(0.5)), 0.98),
    "blur 1.0 px": (lambda n, rng: _prompt_cases(n, rng, _blur(1.0)), 0.98),
    "blur 1.5 px": (lambda n, rng: _prompt_cases(n, rng, _blur(1.5)), 0.98),
    "blur 2.0 px": (lambda n, rng: _prompt_cases(n, rng, _blur(2.0)), None),
    "noise sigma 5": (lambda n, rng: _prompt_cases(n, rng, _noise(5)), 0.98),
    "noise sigma 10": (lambda n, rng: _prompt_cases(n, rng, _noise(10)), 0.98),
    "noise sigma 20": (lambda n, rng: _prompt_cases(n, rng, _noise(20)), 0.98),
    "colour offset <= 15 RGB": (lambda n, rng: _prompt_cases(n, rng, color_offset=15), 0.98),
    "colour offset <= 30 RGB": (lambda n, rng: _prompt_cases(n, rng, color_offset=30), 0.98),
    "colour offset <= 45 RGB": (lambda n, rng: _prompt_cases(n, rng, color_offset=45), 0.98),
    "JPEG quality 50": (lambda n, rng: _prompt_cases(n, rng, _jpeg), 0.98),
    "edge jitter 1 px": (lambda n, rng: _prompt_cases(n, rng, _edge_jitter), 0.98),
    "touching, two colours": (lambda n, rng: _pair_cases(n, rng, (0, 0)), 0.98),
    "1-2 px apart, blur 1 px": (lambda n, rng: _pair_cases(n, rng, (1, 2), blur=1.0), 0.98),
    "touching, one colour": (lambda n, rng: _pair_cases(n, rng, (0, 0), same_color=True), None),
    "overlapping by 2 px": (lambda n, rng: _pair_cases(n, rng, (-2, -2)), 0.98),
    "30-45 % outside the frame": (_cut_cases, 0.98),
    "blank": (lambda n, rng: _empty_cases(n, rng, "blank"), 1.0),
    "noise only": (lambda n, rng: _empty_cases(n, rng, "noise"), 1.0),
    "solid colour": (lambda n, rng: _empty_cases(n, rng, "solid"), 1.0),
    # Kinds added later go last: a kind's seed is its index here, so the earlier kinds keep their cases.
    "brightness +15 RGB": (lambda n, rng: _prompt_cases(n, rng, _brightness(15)), 0.98),
    "brightness -15 RGB": (lambda n, rng: _prompt_cases(n, rng, _brightness(-15)), 0.98),
}


def robustness_cases(kind: str, count: int, seed: int = 0) -> list[Case]:
    """`count` cases of one kind of KINDS, the same for the same seed."""
    build, _ = KINDS[kind]
    return build(count, np.random.default_rng([seed, list(KINDS).index(kind)]))


def agreement(cases: list[Case]) -> float:
    """The fraction of cases whose verdict from pixels equals the verdict by construction."""
    return float(np.mean([evaluate(case.image, case.spec) == case.expected for case in cases]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=500, help="cases per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| images | cases | passing by construction | agreement | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    clean = None
    for kind in tqdm(KINDS, desc="kinds", leave=False):
        cases = robustness_cases(kind, args.cases, args.seed)
        clean = clean or cases
        target = KINDS[kind][1]
        target_text = "-" if target is None else f">= {target:.0%}" if target < 1 else "100 %"
        expected = np.mean([case.expected for case in cases])
        print(f"| {kind} | {len(cases)} | {expected:.0%} | {agreement(cases):.1%} | {target_text} |")
    # CPU time, not wall time: the figure should not depend on what else the machine runs.
    start = time.process_time()
    for case in clean:
        evaluate(case.image, case.spec)
    rate = len(clean) / (time.process_time() - start) * 60
    print(f"\nevaluator speed: {rate:,.0f} images per CPU-minute (clean 64 px images, one thread)")


if __name__ == "__main__":
    main()
