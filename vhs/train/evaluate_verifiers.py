"""Selection quality of the verifiers a preset ships, on the evaluation split (553 prompts, entry i
with seed i) or, for choices, on the validation split.

Each verifier mode of the preset is scored exactly as served: its visual-encoder and LLM engines are
built from the preset's weights alone (`vhs.engines.build_engine`) and give P(yes) for every stored
candidate. Reported per verifier: the within-prompt AUROC (with a bootstrap standard error over
prompts), the overall AUROC, and Best-of-N for N in NUM_CANDIDATES with the paired standard error of
its difference to Best-of-1; and, at the same N, the difference between verifiers (VHS - AE latent,
VHS - CLIP). Best-of-1, mean_of_N and the oracle Best-of-N come from the verdicts alone. Candidate i
of an entry is the served one (noise of (seed, i)), so Best-of-N here is what the server returns.
The evaluation split is touched for the final table only; every choice was made on validation.

    python -m vhs.train.evaluate_verifiers --preset shapes --split evaluation --out out/eval-verifiers
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..engine_names import DIT_PREFIX, DIT_SUFFIX
from ..engines import PROMPT_INPUTS, build_engine
from ..modes import MODES
from ..presets import Preset, load_preset
from ..shapes import TASKS
from .verifier import as_model_input, prompt_tensors, question_tensors
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import load_split
from .verifier_metrics import (
    auroc,
    best_of_n_gain,
    chosen_verdicts,
    overall_difference,
    task_scores,
    within_prompt_auroc,
    within_prompt_auroc_standard_error,
)

NUM_CANDIDATES = (2, 4, 8, 16)
# Differences between verifiers reported at the same N (the paper's claims).
COMPARISONS = (("vhs", "latent"), ("vhs", "clip"))


def stored_features(preset: Preset, reads: str) -> str:
    """The verifier-data array a mode's visual encoder reads: the hidden states after the preset's
    split block, z_0, or the decoded image."""
    return {DIT_PREFIX: f"hidden_states_l{preset.config.split_block}", DIT_SUFFIX: "denoised_latents"}.get(
        reads, "images"
    )


def served_scores(
    preset: Preset, mode_name: str, features: np.ndarray, questions, prompt_index, prompt: Callable
) -> np.ndarray:
    """P(yes) (N,) of every stored candidate through the mode's served engines, in batches.
    questions: `question_tensors` of the prompts; prompt(): their `prompt_tensors` (the DiT's prompt
    inputs), called only when the mode's visual encoder reads the prompt."""
    mode = MODES[mode_name]
    encoder, llm = build_engine(preset, mode.visual_encoder), build_engine(preset, mode.llm)
    question_ids, question_length = questions
    reads_prompt = PROMPT_INPUTS[0] in encoder.input_names
    prompt_inputs = dict(zip(PROMPT_INPUTS, prompt(), strict=True)) if reads_prompt else {}
    scores = []
    with torch.no_grad():
        for start in range(0, len(features), 512):
            rows = np.arange(start, min(start + 512, len(features)))
            prompts = prompt_index[rows]
            visual = encoder(
                **{mode.encoder_input: as_model_input(features[rows])},
                **{name: tensor[prompts] for name, tensor in prompt_inputs.items()},
            )["visual_tokens"]
            outputs = llm(
                visual_tokens=visual,
                question_ids=question_ids[prompts],
                question_length=question_length[prompts],
            )
            scores.append(outputs["yes_probability"].float().numpy())
    return np.concatenate(scores)


def evaluate_verifiers(preset_name: str, split: str, data_dir: Path = DATA_DIR) -> dict:
    """The evaluation of every verifier mode `preset_name` serves on `split` (see the module doc)."""
    preset = load_preset(preset_name)
    arrays, record = load_split(split, ("passed", "prompt_index"), data_dir)
    per_prompt = int(np.bincount(arrays["prompt_index"])[0])
    passed = arrays["passed"].reshape(-1, per_prompt)
    tags = [prompt["tag"] for prompt in record["prompts"]]
    texts = [prompt["text"] for prompt in record["prompts"]]
    questions = question_tensors(preset, texts)
    prompt = functools.cache(lambda: prompt_tensors(preset, texts))  # once, where an encoder reads it
    sizes = [n for n in NUM_CANDIDATES if n <= per_prompt]
    best_of_1 = passed[:, 0].astype(float)
    result = {
        "preset": preset_name,
        "split": split,
        "prompts": len(tags),
        "prompt_tags": tags,
        "candidates_per_prompt": per_prompt,
        "best_of_1": task_scores(best_of_1, tags),
        "mean_of_n": {n: task_scores(passed[:, :n].mean(axis=1), tags)["overall"] for n in sizes},
        "oracle_best_of_n": {n: task_scores(passed[:, :n].max(axis=1), tags)["overall"] for n in sizes},
        "verifiers": {},
        "comparisons": {},
    }
    chosen = {}
    for mode_name in (name for name in preset.config.modes if MODES[name].verifies):
        key = stored_features(preset, MODES[mode_name].reads)
        features = load_split(split, (key,), data_dir)[0][key]
        scores = served_scores(preset, mode_name, features, questions, arrays["prompt_index"], prompt)
        by_prompt = scores.reshape(-1, per_prompt)
        first_four = np.tile(np.arange(per_prompt) < 4, len(tags))
        index, labels = arrays["prompt_index"][first_four], arrays["passed"][first_four]
        chosen[mode_name] = {n: chosen_verdicts(by_prompt, passed, n) for n in range(1, per_prompt + 1)}
        result["verifiers"][mode_name] = {
            "reads": key,
            "within_prompt_auroc_of_4": within_prompt_auroc(scores[first_four], labels, index),
            "within_prompt_auroc_of_4_se": within_prompt_auroc_standard_error(
                scores[first_four], labels, index
            ),
            "auroc": auroc(scores, arrays["passed"]),
            "best_of_n": {n: task_scores(chosen[mode_name][n], tags) for n in sizes},
            "best_of_n_minus_best_of_1": {n: best_of_n_gain(by_prompt, passed, tags, n) for n in sizes},
            # Best-of-N overall for every N, and the verdict chosen for each prompt at every N: the
            # score axis of the time-budget table and the paired standard errors of its differences.
            "best_of_n_overall": [
                task_scores(chosen[mode_name][n], tags)["overall"] for n in chosen[mode_name]
            ],
            # (one string of 0/1 per N, a character per prompt: compact in the shipped JSON)
            "chosen_verdicts": [
                "".join(map(str, chosen[mode_name][n].astype(int))) for n in chosen[mode_name]
            ],
        }
    for first, second in COMPARISONS:
        if first in chosen and second in chosen:
            result["comparisons"][f"{first} - {second}"] = {
                n: overall_difference(chosen[first][n], chosen[second][n], tags) for n in sizes
            }
    return result


def against_previous(result: dict, previous: dict) -> dict[str, dict[int, tuple[float, float]]]:
    """{"<mode> - previous": {N: (difference, paired SE)}}: each verifier's Best-of-N against the
    same mode of an earlier table of the same split (`previous`, this function's JSON), paired over
    the same prompts, for the N both tables hold: what a new release changes, beyond noise or not."""
    if previous["split"] != result["split"] or previous["prompt_tags"] != result["prompt_tags"]:
        raise ValueError("the previous table is of other prompts: compare tables of the same split")
    tags, differences = result["prompt_tags"], {}
    for mode, verifier in result["verifiers"].items():
        if mode not in previous["verifiers"]:
            continue
        new, old = verifier["chosen_verdicts"], previous["verifiers"][mode]["chosen_verdicts"]
        differences[f"{mode} - previous"] = {
            n: overall_difference(_verdicts(new[n - 1]), _verdicts(old[n - 1]), tags)
            for n in map(int, result["oracle_best_of_n"])  # (str keys once read back from JSON)
            if n <= min(len(new), len(old))
        }
    return differences


def _verdicts(chosen: str) -> np.ndarray:
    """The stored string of chosen verdicts (one 0/1 character per prompt) as floats."""
    return np.frombuffer(chosen.encode(), dtype=np.uint8) - ord("0")


def format_tables(result: dict) -> str:
    """Markdown: task scores per selection rule, then each verifier's ranking and gains with SEs."""
    lines = [
        f"{result['split']} split: {result['prompts']} prompts x {result['candidates_per_prompt']} "
        "candidates",
        "",
        "| selection | " + " | ".join(TASKS) + " | overall |",
        "| --- |" + " ---: |" * (len(TASKS) + 1),
    ]

    def row(name: str, scores: dict) -> str:
        return (
            f"| {name} | "
            + " | ".join(f"{scores.get(tag, float('nan')):.3f}" for tag in [*TASKS, "overall"])
            + " |"
        )

    lines.append(row("Best-of-1", result["best_of_1"]))
    for mode, verifier in result["verifiers"].items():
        lines += [row(f"{mode} Best-of-{n}", scores) for n, scores in verifier["best_of_n"].items()]
    lines += ["", "| verifier | within-prompt AUROC (first 4) | AUROC | " + " | ".join(
        f"Bo{n} - Bo1" for n in result["oracle_best_of_n"]) + " |"]  # fmt: skip
    lines.append("| --- |" + " ---: |" * (2 + len(result["oracle_best_of_n"])))
    for mode, verifier in result["verifiers"].items():
        gains = [f"{d:+.3f} ± {se:.3f}" for d, se in verifier["best_of_n_minus_best_of_1"].values()]
        ranking = (
            f"{verifier['within_prompt_auroc_of_4']:.3f} ± {verifier['within_prompt_auroc_of_4_se']:.3f}"
        )
        lines.append(f"| {mode} | {ranking} | {verifier['auroc']:.3f} | " + " | ".join(gains) + " |")
    oracle = [
        f"{result['oracle_best_of_n'][n] - result['best_of_1']['overall']:+.3f}"
        for n in result["oracle_best_of_n"]
    ]
    lines.append("| oracle | 1 | | " + " | ".join(oracle) + " |")
    for name, differences in {**result["comparisons"], **result.get("against_previous", {})}.items():
        lines.append(
            f"| {name} (same N) | | | "
            + " | ".join(f"{d:+.3f} ± {se:.3f}" for d, se in differences.values())
            + " |"
        )
    lines += [
        "",
        "± is one standard error: paired over prompts for differences, bootstrap over prompts for AUROC.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--split", default="evaluation", choices=("validation", "evaluation"),
                        help="validation: for choices; evaluation: the final table")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, help="write <out>/<split>.json and <split>.md")
    parser.add_argument("--previous", type=Path, help="an earlier <split>.json: each verifier against it")
    args = parser.parse_args()
    result = evaluate_verifiers(args.preset, args.split, args.data_dir)
    if args.previous:
        result["against_previous"] = against_previous(result, json.loads(args.previous.read_text()))
    table = format_tables(result)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.split}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{args.split}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
