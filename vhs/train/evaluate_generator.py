"""Score the generator on the fixed evaluation prompts: Best-of-1 and the oracle Best-of-N.

Entry i of `evaluation_prompts()` is generated with seed i by the reference pipeline in mode
"none" (`VHSPipeline`, `return_candidates=True`, which decodes all N candidates and runs no
verifier): candidate 0 is the Best-of-1 image (candidate i depends only on the seed and i), and the
oracle Best-of-N passes when the shapes evaluator passes any of the N candidates (an upper bound for
every verifier). Prints the six GenEval task scores of both.

    python -m vhs.train.evaluate_generator [--preset shapes] [--candidates 4] [--entry-stride 1]
    python -m vhs.train.evaluate_generator --grid vhs/presets/shapes/sample_grid.png
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..pipeline import VHSPipeline
from ..shapes import TASKS, evaluate, evaluation_prompts, prompt_text

GRID_SEEDS = 6
GRID_SCALE = 2  # pixels of the grid per generated pixel
GRID_LABEL_WIDTH = 300


def score_generator(pipeline: VHSPipeline, num_candidates: int, entry_stride: int = 1) -> dict:
    """{"best_of_1": {task: score, ..., "overall": mean}, "oracle_best_of_N": {...}, "mean_of_N": {...},
    "images": count}. mean_of_N is the pass rate over all N candidates: Best-of-1's expectation over
    N noise draws, N times the images, so it separates two generators with less noise.

    entry_stride: score every `entry_stride`-th evaluation entry only (a quick check during training)."""
    passed = {
        "best_of_1": {tag: [] for tag in TASKS},
        f"oracle_best_of_{num_candidates}": {tag: [] for tag in TASKS},
        f"mean_of_{num_candidates}": {tag: [] for tag in TASKS},
    }
    entries = list(enumerate(evaluation_prompts()))[::entry_stride]
    for seed, spec in tqdm(entries, desc="evaluation prompts"):
        output = pipeline(prompt_text(spec), num_candidates, seed, mode="none", return_candidates=True)
        verdicts = [evaluate(image, spec) for image in output.candidate_images]
        passed["best_of_1"][spec.tag].append(verdicts[0])
        passed[f"oracle_best_of_{num_candidates}"][spec.tag].append(any(verdicts))
        passed[f"mean_of_{num_candidates}"][spec.tag].extend(verdicts)
    scores = {name: task_scores(by_task) for name, by_task in passed.items()}
    scores["images"] = len(entries)
    return scores


def task_scores(passed_by_task: dict[str, list[bool]]) -> dict[str, float]:
    """{task: pass rate, ..., "overall": mean of the task pass rates} (GenEval's overall score)."""
    tasks = {tag: float(np.mean(values)) for tag, values in passed_by_task.items() if values}
    return {**tasks, "overall": float(np.mean(list(tasks.values())))}


def format_scores(scores: dict) -> str:
    """A markdown table: one row per selection rule, one column per task and the overall score."""
    rules = [name for name in scores if name != "images"]
    lines = ["| | " + " | ".join(TASKS) + " | overall |", "| --- |" + " ---: |" * (len(TASKS) + 1)]
    for name in rules:
        values = [scores[name].get(tag, float("nan")) for tag in TASKS] + [scores[name]["overall"]]
        lines.append(f"| {name} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    return "\n".join(lines)


def sample_grid(pipeline: VHSPipeline, path: Path) -> None:
    """A PNG of candidate 0 for seeds 0..GRID_SEEDS-1 (columns) of two evaluation prompts per task (rows)."""
    specs = evaluation_prompts()
    rows = [next(spec for spec in specs[::7] if spec.tag == tag) for tag in TASKS]
    rows += [next(spec for spec in specs[::-5] if spec.tag == tag) for tag in TASKS]
    tile = 64 * GRID_SCALE
    grid = Image.new("RGB", (GRID_LABEL_WIDTH + GRID_SEEDS * tile, len(rows) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for row, spec in enumerate(rows):
        draw.text(
            (4, row * tile + tile // 2 - 6), prompt_text(spec).removeprefix("a photo of "), fill="black"
        )
        for seed in range(GRID_SEEDS):
            image = Image.fromarray(
                pipeline(prompt_text(spec), num_candidates=1, seed=seed, mode="none").image
            )
            grid.paste(
                image.resize((tile, tile), Image.NEAREST), (GRID_LABEL_WIDTH + seed * tile, row * tile)
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument(
        "--entry-stride", type=int, default=1, help="score every k-th evaluation entry only (a quick check)"
    )
    parser.add_argument("--out", type=Path, default=Path("build/eval-generator/scores.json"))
    parser.add_argument("--grid", type=Path, help="write a sample grid PNG here instead of scoring")
    args = parser.parse_args()
    pipeline = VHSPipeline.from_preset(args.preset)
    if args.grid:
        sample_grid(pipeline, args.grid)
        print(f"wrote {args.grid}")
        return
    scores = score_generator(pipeline, args.candidates, args.entry_stride)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(scores, indent=2) + "\n")
    print(f"{scores['images']} evaluation entries, preset {args.preset}")
    print(format_scores(scores))


if __name__ == "__main__":
    main()
