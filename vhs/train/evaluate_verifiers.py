"""Selection quality of trained verifiers on the evaluation split (553 prompts, entry i with seed i),
or on the validation split for choices such as the layer.

For every verifier folder (`connector/`, `llm/`, `metrics.json` as `vhs.train.verifier` writes them),
its P(yes) on the first N candidates of each evaluation prompt: within-prompt AUROC, AUROC and
balanced accuracy against the shapes evaluator's verdicts, and the Best-of-N score per task. The
rows Best-of-1, mean_of_N and the oracle Best-of-N come from the verdicts alone. Candidate i of
entry i is the served one (noise of (seed, i)), so Best-of-N here is what the server would return.
The evaluation split is touched for this table only; everything was chosen on validation.

    python -m vhs.train.evaluate_verifiers build/train/verifiers/vhs_l7 build/train/verifiers/latent
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionModel, Qwen2ForCausalLM

from ..presets import load_preset
from ..shapes import TASKS
from ..verifier import ClipVisualEncoder, LatentVisualEncoder, MLPConnector, YesNoScorer
from .verifier import PRESET, VerifierForTraining, question_tensors, score
from .verifier_data import load_split
from .verifier_metrics import best_of_n, selection_metrics, task_scores

NUM_CANDIDATES = 4


def load_trained_verifier(folder: Path, preset) -> tuple[VerifierForTraining, str]:
    """(model, what it reads) of a folder written by `vhs.train.verifier`."""
    reads = json.loads((folder / "metrics.json").read_text())["reads"]
    connector = MLPConnector.from_pretrained(folder / "connector")
    encoder = {
        "denoised_latents": lambda: LatentVisualEncoder(connector),
        "images": lambda: ClipVisualEncoder(
            CLIPVisionModel.from_pretrained(folder / "clip_vision"), connector
        ),
    }.get(reads, lambda: connector)()
    tokens = preset.prompt_tokenizer
    llm = Qwen2ForCausalLM.from_pretrained(folder / "llm")
    scorer = YesNoScorer(llm, tokens.question_prefix_ids, tokens.yes_token_id, tokens.no_token_id)
    return VerifierForTraining(encoder, scorer).eval(), reads


def verdict_rows(passed: np.ndarray, tags: list[str], num_candidates: int) -> dict[str, dict]:
    """Best-of-1, mean_of_N and the oracle Best-of-N from the verdicts (prompts, K)."""
    first = passed[:, :num_candidates].astype(float)
    return {
        "best_of_1": task_scores(first[:, 0], tags),
        f"mean_of_{num_candidates}": task_scores(first.mean(axis=1), tags),
        f"oracle_best_of_{num_candidates}": task_scores(first.max(axis=1), tags),
    }


def evaluate_verifiers(
    folders: list[Path], num_candidates: int = NUM_CANDIDATES, split: str = "evaluation"
) -> dict:
    """{"rows": {name: task scores}, "selection": {name: metrics}, "best_of_n_overall": {name: overall
    Best-of-N for N = 1..K}, "oracle_best_of_n_overall": [...]} on the evaluation split."""
    preset = load_preset(PRESET)
    arrays, record = load_split(split, ("passed", "prompt_index"))
    per_prompt = np.bincount(arrays["prompt_index"])[0]
    passed = arrays["passed"].reshape(-1, per_prompt)
    tags = [prompt["tag"] for prompt in record["prompts"]]
    questions = question_tensors(preset, [prompt["text"] for prompt in record["prompts"]])
    first = np.tile(np.arange(per_prompt) < num_candidates, len(tags))
    rows, selection, curves = verdict_rows(passed, tags, num_candidates), {}, {}
    for folder in folders:
        model, reads = load_trained_verifier(folder, preset)
        features = load_split(split, (reads,))[0][reads]
        with torch.no_grad():
            scores = score(model, features, *questions, arrays["prompt_index"])
        name = f"{folder.name} best_of_{num_candidates}"
        rows[name] = best_of_n(scores.reshape(-1, per_prompt), passed, tags, num_candidates)
        selection[folder.name] = selection_metrics(
            scores[first], arrays["passed"][first], arrays["prompt_index"][first]
        )
        # Best-of-N for every N the split holds: the score axis of the time-budget table.
        curves[folder.name] = [
            best_of_n(scores.reshape(-1, per_prompt), passed, tags, n)["overall"]
            for n in range(1, per_prompt + 1)
        ]
    oracle = [
        verdict_rows(passed, tags, n)[f"oracle_best_of_{n}"]["overall"] for n in range(1, per_prompt + 1)
    ]
    return {
        "rows": rows,
        "selection": selection,
        "num_candidates": num_candidates,
        "best_of_n_overall": curves,
        "oracle_best_of_n_overall": oracle,
    }


def format_tables(result: dict) -> str:
    """Two Markdown tables: task scores per selection rule, and each verifier's selection metrics."""
    lines = ["| | " + " | ".join(TASKS) + " | overall |", "| --- |" + " ---: |" * (len(TASKS) + 1)]
    for name, scores in result["rows"].items():
        values = [scores.get(tag, float("nan")) for tag in TASKS] + [scores["overall"]]
        lines.append(f"| {name} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    lines += [
        "",
        "| verifier | within-prompt AUROC | AUROC | balanced accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, metrics in result["selection"].items():
        lines.append(
            f"| {name} | {metrics['within_prompt_auroc']:.3f} | {metrics['auroc']:.3f} | "
            f"{metrics['balanced_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--candidates", type=int, default=NUM_CANDIDATES)
    parser.add_argument("--split", default="evaluation", choices=("validation", "evaluation"),
                        help="validation: for choices; evaluation: the final table")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    result = evaluate_verifiers(args.folders, args.candidates, args.split)
    print(format_tables(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
