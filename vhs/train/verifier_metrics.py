"""How well a verifier's scores select: AUROCs, balanced accuracy, Best-of-N.

Best-of-N depends on ranking the candidates *of one prompt*: the within-prompt AUROC (over pairs of a
passing and a failing candidate of the same prompt) is the number that matters. The overall AUROC
also rewards knowing which prompts are hard, which says nothing about choosing among candidates.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ..shapes import TASKS


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half; nan if one
    class is absent (the Mann-Whitney U statistic over the product of the class sizes)."""
    labels = labels.astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def mixed(verdicts: np.ndarray) -> np.ndarray:
    """(rows,) bool for verdicts (rows, candidates) of prompts or question groups: the rows holding
    both passing and failing candidates, the only ones a within-prompt ranking can order."""
    return verdicts.any(axis=1) & ~verdicts.all(axis=1)


def within_prompt_auroc(scores: np.ndarray, labels: np.ndarray, prompt_index: np.ndarray) -> float:
    """The AUROC over pairs (passing, failing) of candidates of the same prompt, every pair weighing
    the same; nan if no prompt has both."""
    wins, pairs = within_prompt_pairs(scores, labels, prompt_index)
    return float(wins.sum() / pairs.sum()) if pairs.sum() else float("nan")


def by_task(scores: np.ndarray, arrays: dict, tags: list[str]) -> dict[str, float]:
    """The within-prompt AUROC of all candidates over each task's prompts: where a reader ranks."""
    prompt_tags = np.asarray(tags)[arrays["prompt_index"]]
    return {
        tag: within_prompt_auroc(scores[rows], arrays["passed"][rows], arrays["prompt_index"][rows])
        for tag in dict.fromkeys(tags)
        for rows in [prompt_tags == tag]
    }


def within_prompt_pairs(
    scores: np.ndarray, labels: np.ndarray, prompt_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt (in `np.unique(prompt_index)` order): the (passing, failing) pairs the scores order
    correctly, ties counting half, and the number of such pairs."""
    prompts = np.unique(prompt_index)
    wins, pairs = np.zeros(len(prompts)), np.zeros(len(prompts))
    for i, prompt in enumerate(prompts):
        rows = prompt_index == prompt
        positive, negative = scores[rows][labels[rows] == 1], scores[rows][labels[rows] == 0]
        difference = positive[:, None] - negative[None, :]
        wins[i] = (difference > 0).sum() + 0.5 * (difference == 0).sum()
        pairs[i] = difference.size
    return wins, pairs


def within_prompt_auroc_standard_error(
    scores: np.ndarray, labels: np.ndarray, prompt_index: np.ndarray, resamples: int = 1000
) -> float:
    """The standard error of `within_prompt_auroc` from a bootstrap over prompts (prompts are the
    independent units; candidates of one prompt are not)."""
    wins, pairs = within_prompt_pairs(scores, labels, prompt_index)
    return _bootstrap_standard_error(wins, pairs, resamples) if pairs.sum() else float("nan")


def within_prompt_auroc_difference(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, prompt_index: np.ndarray, resamples: int = 1000
) -> tuple[float, float]:
    """(within-prompt AUROC of `first` minus that of `second`, paired standard error): two verifiers'
    scores of the same candidates, bootstrapped over the same prompt draws, so that what the prompts
    share (how hard their pairs are to order) cancels out. Far smaller than either AUROC's own SE."""
    wins_first, pairs = within_prompt_pairs(first, labels, prompt_index)
    wins = wins_first - within_prompt_pairs(second, labels, prompt_index)[0]
    return float(wins.sum() / pairs.sum()), _bootstrap_standard_error(wins, pairs, resamples)


def _bootstrap_standard_error(wins: np.ndarray, pairs: np.ndarray, resamples: int) -> float:
    """The standard deviation of sum(wins) / sum(pairs) over prompts drawn with replacement (the same
    draws on every call)."""
    drawn = np.random.default_rng(0).integers(len(pairs), size=(resamples, len(pairs)))
    totals = pairs[drawn].sum(axis=1)
    return float(np.std(wins[drawn].sum(axis=1)[totals > 0] / totals[totals > 0], ddof=1))


def overall_difference(first: np.ndarray, second: np.ndarray, tags: list[str]) -> tuple[float, float]:
    """(difference, paired standard error) of GenEval's overall score (the mean of the task means)
    between two per-prompt results `first` and `second` (P,) on the same prompts: the difference of
    the means of `first - second`, with the standard error of each task's mean difference combined
    as the overall score combines the tasks."""
    tags = np.asarray(tags)
    difference = np.asarray(first, float) - np.asarray(second, float)
    tasks = [tag for tag in TASKS if (tags == tag).any()]
    means = [difference[tags == tag].mean() for tag in tasks]
    variances = [difference[tags == tag].var(ddof=1) / (tags == tag).sum() for tag in tasks]
    return float(np.mean(means)), float(np.sqrt(np.sum(variances)) / len(tasks))


def chosen_verdicts(scores: np.ndarray, labels: np.ndarray, num_candidates: int) -> np.ndarray:
    """The verdict (P,) of the highest-scoring of each prompt's first `num_candidates` candidates;
    scores, labels (P, K). Ties go to the lower index, as the served argmax does."""
    chosen = np.argmax(scores[:, :num_candidates], axis=1)
    return labels[np.arange(len(labels)), chosen].astype(float)


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """The mean of the true-positive and true-negative rates of `score >= threshold`; nan if one
    class is absent."""
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    predicted = scores >= threshold
    return float((predicted[labels].mean() + (~predicted[~labels]).mean()) / 2)


def best_of_n(
    scores: np.ndarray, labels: np.ndarray, tags: list[str], num_candidates: int
) -> dict[str, float]:
    """GenEval scores of choosing, per prompt, the highest-scoring of its first `num_candidates`.

    scores, labels: (prompts, K) with K >= num_candidates; tags: each prompt's task. Returns
    {task: pass rate, ..., "overall": mean of the task pass rates}. Ties go to the lower index, as
    the served argmax does.
    """
    return task_scores(chosen_verdicts(scores, labels, num_candidates), tags)


def best_of_n_gain(
    scores: np.ndarray, labels: np.ndarray, tags: list[str], num_candidates: int
) -> tuple[float, float]:
    """(Best-of-`num_candidates` minus Best-of-1 overall, its paired standard error over prompts);
    scores, labels (prompts, K), Best-of-1 the first candidate, as served."""
    chosen = chosen_verdicts(scores, labels, num_candidates)
    return overall_difference(chosen, labels[:, 0].astype(float), tags)


def task_scores(values: np.ndarray, tags: list[str]) -> dict[str, float]:
    """GenEval's summary of per-prompt values (P,): {task: mean, ..., "overall": mean of the tasks}."""
    tags = np.asarray(tags)
    tasks = {tag: float(values[tags == tag].mean()) for tag in TASKS if (tags == tag).any()}
    return {**tasks, "overall": float(np.mean(list(tasks.values())))}


def selection_metrics(scores: np.ndarray, labels: np.ndarray, prompt_index: np.ndarray) -> dict[str, float]:
    """{"within_prompt_auroc", "auroc", "balanced_accuracy"} of flat per-candidate arrays."""
    return {
        "within_prompt_auroc": within_prompt_auroc(scores, labels, prompt_index),
        "auroc": auroc(scores, labels),
        "balanced_accuracy": balanced_accuracy(scores, labels),
    }


def selection_summary(
    scores: np.ndarray, passed: np.ndarray, prompt_index: np.ndarray, tags: list[str], num_candidates: int = 4
) -> dict[str, float]:
    """What Best-of-`num_candidates` gets from a verifier, as the evaluation table reports it, on the
    first `num_candidates` candidates of each prompt (the served seeds): the within-prompt AUROC (+-
    bootstrap SE over prompts) and Best-of-N minus Best-of-1 (+- paired SE). Flat arrays, every
    prompt with as many candidates, in order; `tags` (P,) the prompts' tasks."""
    per_prompt = int(np.bincount(prompt_index)[0])
    by_prompt, verdicts = scores.reshape(-1, per_prompt), passed.reshape(-1, per_prompt)
    first = np.tile(np.arange(per_prompt) < num_candidates, len(by_prompt))
    gain, gain_se = best_of_n_gain(by_prompt, verdicts, tags, num_candidates)
    return {
        "within_prompt_auroc": within_prompt_auroc(scores[first], passed[first], prompt_index[first]),
        "within_prompt_auroc_se": within_prompt_auroc_standard_error(
            scores[first], passed[first], prompt_index[first]
        ),
        f"best_of_{num_candidates}_minus_best_of_1": gain,
        f"best_of_{num_candidates}_minus_best_of_1_se": gain_se,
    }
