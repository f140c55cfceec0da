"""The matched-budget table (`make bench-budget`) from `make eval-verifiers`' JSON: each mode gets
the largest N whose request time fits CLIP's, and VHS - CLIP is paired over the same prompts."""

import numpy as np
import pytest

from vhs.benchmarks.budget import budget_table, format_table

TAGS = ["single_object"] * 4 + ["counting"] * 4


def verifier(verdicts_by_n):
    """A verifier's entry: chosen verdicts (N, P) and the overall score at each N."""
    verdicts = np.asarray(verdicts_by_n).astype(int)
    overall = [float(np.mean([row[:4].mean(), row[4:].mean()])) for row in verdicts]
    return {"best_of_n_overall": overall, "chosen_verdicts": ["".join(map(str, row)) for row in verdicts]}


def test_each_mode_gets_the_largest_n_within_clips_time_and_vhs_minus_clip_is_paired():
    rng = np.random.default_rng(0)
    verdicts = {mode: rng.integers(0, 2, (6, len(TAGS))) for mode in ("clip", "latent", "vhs")}
    scores = {"prompt_tags": TAGS, "verifiers": {mode: verifier(v) for mode, v in verdicts.items()}}
    times = {  # ms per N = 1..6: VHS costs a third of CLIP per candidate, AE-latent half
        "clip": {n: 30.0 * n for n in range(1, 7)},
        "latent": {n: 15.0 * n for n in range(1, 7)},
        "vhs": {n: 10.0 * n for n in range(1, 7)},
    }
    rows = budget_table(times, scores)
    assert [row["vhs_n"] for row in rows] == [6, 6, 6]  # 60 ms fits N = 6 at the first budget
    assert [row["latent_n"] for row in rows] == [4, 6, 6]
    first = rows[0]
    assert first["vhs_score"] == scores["verifiers"]["vhs"]["best_of_n_overall"][5]
    difference = verdicts["vhs"][5] - verdicts["clip"][1]
    expected = np.mean([difference[:4].mean(), difference[4:].mean()])
    assert first["vhs_minus_clip"][0] == pytest.approx(expected)
    assert first["vhs_minus_clip"][1] > 0
    assert "±" in format_table(rows)


def test_a_budget_below_every_vhs_request_leaves_vhs_out():
    scores = {
        "prompt_tags": TAGS,
        "verifiers": {m: verifier(np.ones((6, 8))) for m in ("clip", "latent", "vhs")},
    }
    times = {mode: {n: 100.0 * n for n in range(1, 7)} for mode in ("clip", "latent")}
    times["vhs"] = {n: 1000.0 for n in range(1, 7)}
    rows = budget_table(times, scores)
    assert all(row["vhs_n"] is None and "vhs_minus_clip" not in row for row in rows)
    table_rows = [line for line in format_table(rows).splitlines() if line.startswith("| CLIP Best-of-")]
    assert len(table_rows) == 3 and all(line.endswith("| - | - | - |") for line in table_rows)
