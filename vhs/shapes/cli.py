"""vhs-eval-shapes: score a GenEval-layout folder with the shapes evaluator, or write a reference one.

vhs-eval-shapes DIR [--results FILE]     score DIR (the same as `vhs-eval-shapes score DIR`)
vhs-eval-shapes render-reference OUT [--samples 4] [--size 64] [--seed 0]
                                         write the evaluation prompts with correct rendered
                                         scenes ("ground truth" images: every score is 1.0)
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vhs.shapes.evaluate import grade_folder, summarize
from vhs.shapes.layout import LayoutError, write_prompt_folder
from vhs.shapes.prompt_sets import evaluation_prompts
from vhs.shapes.scenes import scene_for_prompt
from vhs.shapes.world import render_scene

COMMANDS = ("score", "render-reference")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-eval-shapes", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a GenEval-layout folder (the default command)")
    score.add_argument("folder", type=Path, help="<folder>/<00000>/metadata.jsonl and samples/*.png")
    score.add_argument("--results", type=Path, help="also write one JSON line per image: verdict and reason")
    reference = commands.add_parser("render-reference", help="write the evaluation prompts with right scenes")
    reference.add_argument("folder", type=Path, help="where to write the GenEval-layout folder")
    reference.add_argument("--samples", type=int, default=4, help="images per prompt (default 4)")
    reference.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    reference.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    return parser


def score(folder: Path, results_path: Path | None) -> None:
    """Grade every image of `folder` and print the six task scores and the overall score."""
    start = time.perf_counter()
    grades = grade_folder(folder)
    seconds = time.perf_counter() - start
    summary = summarize(grades)
    print(f"scored {len(grades)} images in {seconds:.1f} s ({60 * len(grades) / seconds:.0f} images/min)")
    for tag, task_score in summary["tasks"].items():
        print(f"{tag:<14} {task_score:.3f}  ({summary['images'][tag]} images)")
    print(f"{'overall':<14} {summary['overall']:.3f}")
    if results_path is not None:
        with results_path.open("w") as results:
            for grade in grades:
                record = {"path": str(grade.path), "tag": grade.tag, "prompt": grade.prompt,
                          "correct": grade.passed, "reason": grade.reason}  # fmt: skip
                results.write(json.dumps(record) + "\n")


def render_reference(folder: Path, samples: int, size: int, seed: int) -> None:
    """Write every evaluation prompt with `samples` correct scenes, in GenEval's layout."""
    prompts = evaluation_prompts()
    for index, spec in enumerate(prompts):
        rng = np.random.default_rng([seed, index])
        images = [render_scene(scene_for_prompt(spec, rng), size) for _ in range(samples)]
        write_prompt_folder(folder, index, spec, images)
    print(f"wrote {len(prompts)} prompts x {samples} images to {folder}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["score", *argv]
    args = _parser().parse_args(argv)
    try:
        if args.command == "score":
            score(args.folder, args.results)
        else:
            render_reference(args.folder, args.samples, args.size, args.seed)
    except LayoutError as error:
        print(f"vhs-eval-shapes: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
