"""perf_analyzer's `--input-data` for the `vhs` model: real prompts of the `shapes` evaluation set.

The repository ships `benchmarks/input_data/shapes_prompts.json` (VHS mode, N = 4), which a user
passes to a plain `perf_analyzer` against `make serve` or an NGC container; `make bench` derives
the other modes and N from it (`variant`). BYTES inputs such as PROMPT cannot be random, so
perf_analyzer needs such a file; it cycles through the entries, one per request.

    python -m vhs.benchmarks.input_data                      # rewrite the shipped file
    python -m vhs.benchmarks.input_data --mode clip -n 8 > input_clip_8.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vhs import protocol as P
from vhs.modes import DEFAULT_MODE

SHIPPED_FILE = Path(__file__).parent / "input_data" / "shapes_prompts.json"
PROMPTS_PER_TASK = 8  # 46 distinct prompts over GenEval's six task types (6 single objects)
SHIPPED_CANDIDATES = 4


def evaluation_prompt_texts(per_task: int = PROMPTS_PER_TASK) -> list[str]:
    """The first `per_task` distinct prompts of every task of the shapes evaluation set, task by task."""
    from vhs.shapes.prompt_sets import evaluation_prompts
    from vhs.shapes.prompts import TASKS, prompt_text

    texts: dict[str, list[str]] = {tag: [] for tag in TASKS}
    for spec in evaluation_prompts():
        chosen = texts[spec.tag]
        text = prompt_text(spec)
        if len(chosen) < per_task and text not in chosen:
            chosen.append(text)
    return [text for tag in TASKS for text in texts[tag]]


def input_data(prompts: Sequence[str], mode: str, num_candidates: int) -> dict:
    """perf_analyzer's `--input-data` JSON: one request per prompt, seed = its index.

    Every input of the `vhs` model appears with its config shape [1]: PROMPT (BYTES), NUM_CANDIDATES
    (INT32), SEED (INT64), MODE (BYTES).
    """
    return {
        "data": [
            {P.PROMPT: [prompt], P.NUM_CANDIDATES: [num_candidates], P.SEED: [seed], P.MODE: [mode]}
            for seed, prompt in enumerate(prompts)
        ]
    }


def shipped_prompts(path: Path = SHIPPED_FILE) -> list[str]:
    """The prompts of the shipped input-data file, in order."""
    return [entry[P.PROMPT][0] for entry in json.loads(path.read_text())["data"]]


def variant(mode: str, num_candidates: int, path: Path = SHIPPED_FILE) -> dict:
    """The shipped file's prompts and seeds with MODE and NUM_CANDIDATES replaced."""
    return input_data(shipped_prompts(path), mode, num_candidates)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", help="print a variant of the shipped file in this MODE to stdout")
    parser.add_argument("-n", "--num-candidates", type=int, default=SHIPPED_CANDIDATES)
    args = parser.parse_args(argv)
    if args.mode is None:
        data = input_data(evaluation_prompt_texts(), DEFAULT_MODE, SHIPPED_CANDIDATES)
        SHIPPED_FILE.parent.mkdir(exist_ok=True)
        entries = ",\n".join(f"  {json.dumps(entry)}" for entry in data["data"])  # one request a line
        SHIPPED_FILE.write_text(f'{{"data": [\n{entries}\n]}}\n')
        print(f"wrote {SHIPPED_FILE} ({len(data['data'])} prompts)", file=sys.stderr)
    else:
        print(json.dumps(variant(args.mode, args.num_candidates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
