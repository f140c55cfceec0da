"""l* chosen on validation by quality per FLOP: VHS at every trained block at the compute of CLIP
Best-of-2, the paper's headline comparison.

For each VHS verifier of the study (`make verifier-study`: vhs_l<block>, the shipped recipe), the
request FLOPs of the `shapes` preset split after that block (prefix and suffix recounted, every
other engine as served, `vhs.benchmarks.flops`) give the largest N whose VHS request costs no more
than a CLIP Best-of-2 request; the study's validation Best-of-N minus Best-of-1 at that N (+- paired
SE) is the block's quality at that compute. The block with the highest is l*. Variants of the recipe
(folders with a suffix, e.g. vhs_l7_listwise) are left out: they compare losses, not blocks.

    python -m vhs.benchmarks.block_choice --study build/train/verifiers/study.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from vhs.presets import load_preset

from .flops import engine_flops, engine_flops_at_block, request_flops

BUDGET_MODE, BUDGET_N = "clip", 2  # the compute every block is compared at
SHIPPED_RECIPE = re.compile(r"vhs_l(\d+)")


def block_choice(study: dict, preset_name: str = "shapes") -> list[dict]:
    """One row per VHS block of the study: the block, its per-candidate and budget FLOPs, the largest
    N within CLIP Best-of-2's FLOPs, and the validation Best-of-N - Best-of-1 (+- SE) at that N."""
    preset = load_preset(preset_name)
    budget = request_flops(engine_flops(preset), BUDGET_MODE, BUDGET_N)
    rows = []
    for name, verifier in study["verifiers"].items():
        match = SHIPPED_RECIPE.fullmatch(name)
        if not match:
            continue
        block = int(match.group(1))
        per_row = engine_flops_at_block(preset, block)
        gains = verifier["best_of_n_minus_best_of_1"]
        fitting = [n for n in range(1, len(gains) + 1) if request_flops(per_row, "vhs", n) <= budget]
        n = max(fitting, default=None)
        rows.append({
            "block": block,
            "candidate_mflop": (request_flops(per_row, "vhs", 2) - request_flops(per_row, "vhs", 1)) / 1e6,
            "num_candidates": n,
            "gain": None if n is None else gains[n - 1],
            "within_prompt_auroc": verifier["within_prompt_auroc"],
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["block"])


def format_choice(rows: list[dict], budget_gain: tuple[float, float] | None) -> str:
    lines = [
        "| l* | MFLOP per extra candidate | N within CLIP Best-of-2's FLOPs | validation Bo(N) - Bo1 | "
        "within-prompt AUROC (first 4) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        gain = "-" if row["gain"] is None else f"{row['gain'][0]:+.3f} ± {row['gain'][1]:.3f}"
        lines.append(
            f"| {row['block']} | {row['candidate_mflop']:.1f} | {row['num_candidates'] or '-'} | {gain} | "
            f"{row['within_prompt_auroc']:.3f} |"
        )
    if budget_gain is not None:
        lines.append(
            f"\nCLIP Best-of-2 - Best-of-1 on validation: {budget_gain[0]:+.3f} ± {budget_gain[1]:.3f}."
        )
    chosen = max(
        (row for row in rows if row["gain"] is not None), key=lambda row: row["gain"][0], default=None
    )
    if chosen is not None:
        lines.append(f"Chosen by quality at this compute: l* = {chosen['block']}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path("build/train/verifiers/study.json"))
    args = parser.parse_args(argv)
    study = json.loads(args.study.read_text())
    rows = block_choice(study)
    clip = study["verifiers"].get("clip")
    print(
        format_choice(rows, None if clip is None else tuple(clip["best_of_n_minus_best_of_1"][BUDGET_N - 1]))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
