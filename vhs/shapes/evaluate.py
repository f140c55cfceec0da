"""The shapes evaluator: GenEval's verdict on an image, from its pixels, and GenEval's scores on a folder.

A task's score is the fraction of its images that pass; the overall score is the mean of the task
scores, as in GenEval's summary.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vhs.shapes.detect import detect_objects
from vhs.shapes.layout import LayoutError, read_prompt_folders
from vhs.shapes.prompts import TASKS, PromptSpec
from vhs.shapes.rules import check_objects


def evaluate_with_reason(image: np.ndarray, spec: PromptSpec) -> tuple[bool, str]:
    """(passed, why not: one line per failed clause, empty when passed) for a uint8 (H, W, 3) image."""
    return check_objects(detect_objects(image), spec)


def evaluate(image: np.ndarray, spec: PromptSpec) -> bool:
    """Whether a uint8 (H, W, 3) image shows what `spec` asks for, by GenEval's rules."""
    return evaluate_with_reason(image, spec)[0]


@dataclass(frozen=True)
class ImageGrade:
    """The verdict on one image of a GenEval-layout folder."""

    path: Path
    tag: str
    prompt: str
    passed: bool
    reason: str


def grade_folder(root: str | Path) -> list[ImageGrade]:
    """The verdict on every image of a GenEval-layout folder; raises LayoutError if it is malformed."""
    grades = []
    for folder in read_prompt_folders(root):
        for path in folder.sample_paths:
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                raise LayoutError(f"{path}: not a readable image ({error})") from error
            passed, reason = evaluate_with_reason(pixels, folder.spec)
            grades.append(ImageGrade(path, folder.spec.tag, folder.prompt, passed, reason))
    return grades


def summarize(grades: list[ImageGrade]) -> dict:
    """GenEval's summary: {"tasks": {tag: fraction passed}, "overall": mean of the task scores,
    "images": {tag: image count}}; tasks in TASKS order, only those present."""
    tasks, images = {}, {}
    for tag in TASKS:
        passed = [grade.passed for grade in grades if grade.tag == tag]
        if passed:
            tasks[tag] = float(np.mean(passed))
            images[tag] = len(passed)
    overall = float(np.mean(list(tasks.values()))) if tasks else float("nan")
    return {"tasks": tasks, "overall": overall, "images": images}


def score_folder(root: str | Path) -> dict:
    """GenEval's scores of a GenEval-layout folder (see `summarize`); raises LayoutError if malformed."""
    return summarize(grade_folder(root))
