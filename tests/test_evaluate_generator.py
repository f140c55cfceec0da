"""The generator's scorer: Best-of-1 judges candidate 0, the oracle Best-of-N and the mean every candidate."""

import pytest

from vhs.train import evaluate_generator


@pytest.mark.slow  # runs the tiny pipeline on every candidate it judges
def test_oracle_sees_all_n_candidates_and_best_of_1_only_the_first(tiny_pipeline, monkeypatch):
    judged = []

    def evaluate_passes_only_the_third_candidate(image, spec):
        judged.append(image)
        return (len(judged) - 1) % 4 == 2

    monkeypatch.setattr(evaluate_generator, "evaluate", evaluate_passes_only_the_third_candidate)
    scores = evaluate_generator.score_generator(tiny_pipeline, num_candidates=4, entry_stride=200)
    assert len(judged) == 4 * scores["images"]
    assert len({image.tobytes() for image in judged[:4]}) == 4, "four different candidates"
    assert scores["best_of_1"]["overall"] == 0.0
    assert scores["oracle_best_of_4"]["overall"] == 1.0
    assert scores["mean_of_4"]["overall"] == 0.25
    assert set(scores["best_of_1"]) - {"overall"} <= set(evaluate_generator.TASKS)
