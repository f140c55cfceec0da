"""Nearby questions: every training candidate judged again against prompts one or two words from its own.

A candidate's label is the evaluator's verdict on its own prompt, and all 16 candidates of a prompt
share that prompt, so a reader lowers its loss by learning which prompts are hard, and the split
holds few texts for some tasks (7 counting, 10 two-object prompts). The evaluator is exact for any
prompt, so the same candidates can be asked more: each prompt's nearby texts (the same task, the
same number of words, one or two words changed: a count, a shape, a colour and its article, a
relation) among the split's own texts, never an evaluation or validation prompt. On a nearby
question the same image can pass where it failed, so ranking its candidates asks the reader to read
the question against the image.

For a built split, writes <split>/nearby_questions.safetensors and .json, one group per (prompt,
nearby question), up to QUESTIONS_PER_PROMPT per prompt chosen at random (seeded):

    prompt_index   (G,) int32              the prompt whose candidates the group holds
    passed         (G, candidates) uint8   the evaluator's verdict on each candidate for the question
    questions      (json: G texts)         the question's prompt text

    python -m vhs.train.nearby_questions --split train
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from ..shapes import check_objects, detect_objects, parse_prompt
from . import verifier_data
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import load_split, shard_paths
from .verifier_metrics import mixed

QUESTIONS_PER_PROMPT = 8
MAX_CHANGED_WORDS = 2  # a colour change also changes "a" / "an"
SEED = 0
WORKERS = 2


def nearby_texts(texts: list[str], tags: list[str]) -> dict[str, list[str]]:
    """For every distinct text, the other texts of its task with as many words, 1..MAX_CHANGED_WORDS
    of them changed, sorted."""
    words = {text: text.split() for text in set(texts)}
    task = dict(zip(texts, tags, strict=True))
    nearby = {}
    for text, own in words.items():
        nearby[text] = sorted(
            other
            for other, theirs in words.items()
            if other != text and task[other] == task[text] and len(theirs) == len(own)
            and sum(a != b for a, b in zip(own, theirs, strict=True)) <= MAX_CHANGED_WORDS
        )  # fmt: skip
    return nearby


def _judge_shard(job: tuple[Path, list[list[str]]]) -> list[np.ndarray]:
    """The verdicts (questions, candidates) of each prompt of one shard on its questions."""
    path, questions_of_prompt = job
    with safe_open(str(path), "np") as shard:  # the images only, not every stored hidden state
        images, prompt_index = shard.get_tensor("images"), shard.get_tensor("prompt_index")
    objects = [detect_objects(image) for image in images]
    verdicts = []
    for p, questions in enumerate(questions_of_prompt):
        rows = np.flatnonzero(prompt_index == p)
        judged = np.zeros((len(questions), len(rows)), np.uint8)
        for q, question in enumerate(questions):
            spec = parse_prompt(question)
            judged[q] = [check_objects(objects[r], spec)[0] for r in rows]
        verdicts.append(judged)
    return verdicts


def build(split: str, data_dir: Path = DATA_DIR, workers: int = WORKERS) -> dict:
    """Judge the split's candidates on their prompts' nearby questions; returns the summary it logs."""
    record = load_split(split, ("prompt_index",), data_dir)[1]
    texts = [prompt["text"] for prompt in record["prompts"]]
    nearby = nearby_texts(texts, [prompt["tag"] for prompt in record["prompts"]])
    questions = []
    for index, text in enumerate(texts):
        rng = np.random.default_rng([SEED, index])
        options = nearby[text]
        picks = rng.permutation(len(options))[:QUESTIONS_PER_PROMPT]
        questions.append([options[i] for i in sorted(picks)])
    shard_prompts = verifier_data.SHARD_PROMPTS  # shard i holds prompts i * shard_prompts onwards
    per_shard = [
        (path, questions[i * shard_prompts : (i + 1) * shard_prompts])
        for i, path in enumerate(shard_paths(split, data_dir))
    ]
    with Pool(workers) as pool:
        judged = list(tqdm(pool.imap(_judge_shard, per_shard), total=len(per_shard), desc="nearby questions"))
    verdicts = [v for shard in judged for v in shard]
    prompt_index = np.repeat(np.arange(len(texts), dtype=np.int32), [len(q) for q in questions])
    passed = np.concatenate(verdicts)
    flat_questions = [question for qs in questions for question in qs]
    summary = {
        "split": split,
        "groups": len(flat_questions),
        "prompts_with_a_nearby_question": int(sum(bool(q) for q in questions)),
        "pass_rate": float(passed.mean()),
        "share_of_mixed_groups": float(mixed(passed).mean()),
    }
    out = data_dir / split / "nearby_questions"
    save_file({"prompt_index": prompt_index, "passed": passed}, str(out.with_suffix(".tmp")))
    out.with_suffix(".json").write_text(json.dumps({**summary, "questions": flat_questions}) + "\n")
    out.with_suffix(".tmp").replace(out.with_suffix(".safetensors"))
    return summary


def load(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(prompt_index (G,), passed (G, candidates), question texts) of a split's nearby questions."""
    path = data_dir / split / "nearby_questions.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run python -m vhs.train.nearby_questions --split {split}"
        )
    arrays = load_file(str(path))
    return (
        arrays["prompt_index"],
        arrays["passed"],
        json.loads(path.with_suffix(".json").read_text())["questions"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    print(json.dumps(build(args.split, args.data_dir, args.workers), indent=2))


if __name__ == "__main__":
    main()
