"""The verifier study's table: every trained verifier and the readability diagnostics, on validation.

Each folder under --verifiers that holds a `metrics.json` (a run of `vhs.train.verifier`) is scored
again from its saved weights on the validation candidates, so every row is measured the same way,
whichever version of the recipe wrote it: the within-prompt AUROC over all candidates of a prompt,
and, as the evaluation table reports it, the within-prompt AUROC of the first 4 candidates (+-
bootstrap SE) and Best-of-4 minus Best-of-1 (+- paired SE). The readability diagnostics
(`vhs.train.readability`: every readability*.json there, one run or several) add the ceiling and
the non-LLM probe per representation. Writes <out>.json and <out>.md.

    python -m vhs.train.verifier_study --verifiers build/train/verifiers --out build/train/verifiers/study
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from transformers import Qwen2ForCausalLM

from ..presets import load_preset
from ..verifier import YesNoScorer
from .assemble_verifiers import preset_split_block, shipped
from .readability import REPRESENTATIONS
from .verifier import (
    VerifierForTraining,
    connector_of,
    prompt_tensors,
    question_tensors,
    score,
    visual_encoder_for,
)
from .verifier_data import OUT_DIR as DATA_DIR
from .verifier_data import load_split
from .verifier_metrics import (
    best_of_n_gain,
    by_task,
    chosen_verdicts,
    overall_difference,
    selection_summary,
    within_prompt_auroc,
    within_prompt_auroc_difference,
)


def load_trained_verifier(folder: Path, reads: str, preset) -> VerifierForTraining:
    """A verifier as `vhs.train.verifier` saved it in `folder` (connector/, llm/, clip_vision/)."""
    encoder = visual_encoder_for(preset, reads, clip_tower=folder)
    connector = type(connector_of(encoder)).from_pretrained(folder / "connector")  # its own widths
    if encoder is connector_of(encoder):
        encoder = connector
    else:
        encoder.connector = connector
    tokens = preset.prompt_tokenizer
    llm = Qwen2ForCausalLM.from_pretrained(folder / "llm")
    scorer = YesNoScorer(llm, tokens.question_prefix_ids, tokens.yes_token_id, tokens.no_token_id)
    return VerifierForTraining(encoder, scorer).eval()


def best_of_n_gains(scores: np.ndarray, passed: np.ndarray, tags: list[str]) -> list[tuple[float, float]]:
    """[(Best-of-N - Best-of-1, paired SE) for N = 1 .. candidates per prompt], N the first N."""
    by_prompt, verdicts = scores.reshape(len(tags), -1), passed.reshape(len(tags), -1)
    return [best_of_n_gain(by_prompt, verdicts, tags, n) for n in range(1, verdicts.shape[1] + 1)]


def reader_shape(config) -> str:
    """The LLM's shape in words: layers, width, attention heads (query / key-value)."""
    return (
        f"{config.num_hidden_layers} layers x {config.hidden_size}, "
        f"{config.num_attention_heads}/{config.num_key_value_heads} heads"
    )


def paired_difference(first: np.ndarray, second: np.ndarray, arrays: dict, tags: list[str]) -> dict:
    """First minus second verifier on the same candidates, each with its paired SE: the within-prompt
    AUROC of all candidates, and Best-of-4 (the first 4, as served)."""
    passed = arrays["passed"].reshape(len(tags), -1)
    return {
        "within_prompt_auroc_all": within_prompt_auroc_difference(
            first, second, arrays["passed"], arrays["prompt_index"]
        ),
        "best_of_4": overall_difference(
            chosen_verdicts(first.reshape(passed.shape), passed, 4),
            chosen_verdicts(second.reshape(passed.shape), passed, 4),
            tags,
        ),
    }


def study(
    verifiers: Path, data_dir: Path = DATA_DIR, preset_name: str = "shapes", shipped_names: Iterable[str] = ()
) -> dict:
    """{"verifiers": {folder name: row}, "readability": the diagnostics or {}}. Every row that reads
    what a shipped verifier reads (folders `shipped_names`, as `make train-verifier` names them) holds
    its difference from that one, paired over the same candidates: variants of a recipe differ by
    less than either's own standard error."""
    preset = load_preset(preset_name)
    arrays, record = load_split("validation", ("passed", "prompt_index"), data_dir)
    tags = [prompt["tag"] for prompt in record["prompts"]]
    texts = [prompt["text"] for prompt in record["prompts"]]
    questions = question_tensors(preset, texts)
    prompt = functools.cache(lambda: prompt_tensors(preset, texts))  # once, where a verifier reads it
    rows, scores_of = {}, {}
    for metrics_file in sorted(verifiers.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        if "reads" not in metrics:  # the CLIP tower's pre-training
            continue
        reads, folder = metrics["reads"], metrics_file.parent
        features = load_split("validation", (reads,), data_dir)[0][reads]
        model = load_trained_verifier(folder, reads, preset)
        reads_prompt = connector_of(model.visual_encoder).reads_prompt
        scores = scores_of[folder.name] = score(
            model, features, *questions, arrays["prompt_index"], prompt() if reads_prompt else ()
        )
        rows[folder.name] = {
            "reads": reads,
            "loss": metrics["loss"],
            "steps": metrics["steps"],
            "clip_tower": metrics.get("clip_tower"),
            "alignment_trains": metrics.get("alignment_trains", "connector"),
            "fine_tuning_lr": metrics.get("fine_tuning_lr", 5e-4),
            "fine_tuning_batch": metrics.get("fine_tuning_batch", "16 prompts x 8 candidates"),
            "reader": reader_shape(model.scorer.llm.config),
            "object_map_weight": metrics.get("object_map_weight", 0.0),
            "nearby_questions": metrics.get("nearby_questions_with_passing_and_failing_candidates"),
            "train_seconds": metrics.get("train_seconds"),
            "within_prompt_auroc_all": within_prompt_auroc(scores, arrays["passed"], arrays["prompt_index"]),
            "within_prompt_auroc_all_by_task": by_task(scores, arrays, tags),
            **selection_summary(scores, arrays["passed"], arrays["prompt_index"], tags),
            # Best-of-N minus Best-of-1 (+- paired SE) for every N: the quality axis of the
            # choice of l* per FLOP (`python -m vhs.benchmarks.block_choice`).
            "best_of_n_minus_best_of_1": best_of_n_gains(scores, arrays["passed"], tags),
        }
        print(folder.name, json.dumps(rows[folder.name]), flush=True)
    shipped_for = {rows[name]["reads"]: name for name in shipped_names if name in rows}
    for name, row in rows.items():
        row["shipped"] = shipped_for.get(row["reads"])
        if row["shipped"] not in (None, name):
            row["minus_shipped"] = paired_difference(scores_of[name], scores_of[row["shipped"]], arrays, tags)
    return {"split": "validation", "verifiers": rows, "readability": merged_readability(verifiers)}


def merged_readability(verifiers: Path) -> dict:
    """Every readability*.json in `verifiers` (runs of vhs.train.readability, representations or
    diagnostics run apart) as one {representation: {diagnostic: summary}}: a later run adds its
    diagnostics to a representation's row and keeps the ones it did not run."""
    readability = {}
    for path in sorted(verifiers.glob("readability*.json")):
        for name, row in json.loads(path.read_text()).items():
            readability.setdefault(name, {}).update(row)
    order = {name: i for i, name in enumerate(REPRESENTATIONS)}
    return dict(sorted(readability.items(), key=lambda item: order.get(item[0], len(order))))


def format_by_task(verifiers: dict) -> list[str]:
    """Markdown lines: each verifier's within-prompt AUROC of all candidates, task by task."""
    by_task = {name: row.get("within_prompt_auroc_all_by_task", {}) for name, row in verifiers.items()}
    tasks = list(dict.fromkeys(tag for values in by_task.values() for tag in values))
    lines = ["| verifier | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
    for name, values in by_task.items():
        cells = (f"{values[tag]:.3f}" if tag in values else "" for tag in tasks)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def format_study(result: dict) -> str:
    """Markdown: the verifiers, then the diagnostics per representation."""

    def pm(summary: dict, key: str) -> str:
        """A value and its standard error; differences signed."""
        value = f"{summary[key]:+.3f}" if key.startswith("best_of") else f"{summary[key]:.3f}"
        return f"{value} ± {summary[key + '_se']:.3f}"

    lines = [
        "| verifier | reads | loss | steps (prior/align/fine-tune) | within-prompt AUROC, all 16 | "
        "within-prompt AUROC, first 4 | Bo4 - Bo1 | minus the shipped one: AUROC all 16, Bo4 | train time |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["verifiers"].items():
        # the recipe names the batch and the reader where they differ from the shipped verifier's
        reference = result["verifiers"].get(row.get("shipped"), row)
        steps = "/".join(str(row["steps"][stage]) for stage in ("prior", "alignment", "fine_tuning"))
        loss = ", ".join([
            row["loss"],
            *(["CLIP tower tuned"] if row["clip_tower"] == "fine-tuned in stage 2" else []),
            *(["stage 1 trains the LLM"] if row["alignment_trains"] != "connector" else []),
            *([f"lr {row['fine_tuning_lr']:g}"] if row["fine_tuning_lr"] != 5e-4 else []),
            *([f"object map x {row['object_map_weight']:g}"] if row.get("object_map_weight") else []),
            *(["nearby questions"] if row.get("nearby_questions") is not None else []),
            *(f"{key.replace('fine_tuning_', '')} {row[key]}" for key in ("fine_tuning_batch", "reader")
              if row[key] != reference[key]),
        ])  # fmt: skip
        minutes = "" if row["train_seconds"] is None else f"{row['train_seconds'] / 60:.0f} min"
        versus = ", ".join(f"{d:+.3f} ± {se:.3f}" for d, se in row.get("minus_shipped", {}).values())
        lines.append(
            f"| {name} | {row['reads']} | {loss} | {steps} | {row['within_prompt_auroc_all']:.3f} | "
            f"{pm(row, 'within_prompt_auroc')} | {pm(row, 'best_of_4_minus_best_of_1')} | {versus} | "
            f"{minutes} |"
        )
    lines += [
        "",
        *format_by_task(result["verifiers"]),
        "",
        "(within-prompt AUROC of all candidates, per task)",
    ]
    if result["readability"]:
        lines += [
            "",
            "| representation | train candidates | probe: within-prompt AUROC | probe: Bo4 - Bo1 | "
            "conv probe: within-prompt AUROC | conv probe: Bo4 - Bo1 | "
            "ceiling: within-prompt AUROC | ceiling: Bo4 - Bo1 | ceiling: verdict agreement |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in result["readability"].items():
            cells = [
                pm(row[diagnostic], key) if diagnostic in row else "-"
                for diagnostic in ("probe", "conv_probe", "ceiling")
                for key in ("within_prompt_auroc", "best_of_4_minus_best_of_1")
            ]
            if "ceiling" in row:
                cells.append(f"{row['ceiling']['verdict_agreement']:.3f}")
            elif name.startswith("hidden_states_l"):
                cells.append("-")  # not run (judging is slow)
            else:
                cells[-2:] = ["(oracle)", "(oracle)", "1"]  # z_0 and the pixels are what is judged
            lines.append(f"| {name} | {row['train_candidates']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{result['split']} split. ± is one standard error: bootstrap over prompts for AUROC, paired over "
        "prompts for differences. Best-of-4 reads the first 4 candidates of each prompt, as served.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verifiers", type=Path, default=Path("build/train/verifiers"))
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=Path("build/train/verifiers/study"))
    args = parser.parse_args()
    result = study(args.verifiers, args.data_dir, shipped_names=shipped(preset_split_block()))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(format_study(result) + "\n")
    print(format_study(result))


if __name__ == "__main__":
    main()
