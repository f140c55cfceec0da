"""The latency model behind BUDGET_MS, without a server: synthetic requests whose stages cost a known
fixed time plus a known time per row, with and without noise."""

import numpy as np
import pytest

from vhs.modes import MODES
from vhs.runtime.latency_model import (
    MIN_GROUP_SAMPLES,
    MIN_RESIDUALS,
    PRIOR_MARGIN,
    LatencyModel,
    overhead_stage,
    stage_rows,
)

MAX_N = 8
# (fixed ms, ms per row) of every stage a request reports; the overhead of each mode is its own stage.
COSTS = {
    "tokenize": (0.5, 0.0),
    "text_encoder": (2.0, 0.0),
    "dit_prefix": (3.0, 1.5),
    "dit_suffix": (2.0, 1.0),
    "vae_decoder": (2.5, 2.0),
    "connector": (1.0, 0.25),
    "llm": (4.0, 0.5),
    "clip_vision": (1.5, 0.75),
    "clip_llm": (4.0, 0.5),
    "latent_connector": (1.0, 0.25),
    "latent_llm": (4.0, 0.5),
}
OVERHEAD = (0.8, 0.1)


def exact_timings(mode, n):
    """TIMINGS and request time of a noise-free request: every stage at its cost line."""
    timings = {"tokenize": COSTS["tokenize"][0]}
    for engine, rows in MODES[mode].engine_rows(n).items():
        fixed, per_row = COSTS[engine]
        timings[engine] = fixed + per_row * rows
    generated = MODES[mode].generated_candidates(n)
    return timings, sum(timings.values()) + OVERHEAD[0] + OVERHEAD[1] * generated


def expected_typical_ms(mode, n):
    return exact_timings(mode, n)[1]


def calibrated(modes=("vhs", "clip", "latent", "none"), rounds=3, noise=None, rng=None):
    """A model shown each mode at N = 1 and N = MAX_N, `rounds` times; `noise(rng)` scales a request."""
    model = LatencyModel()
    for _ in range(rounds):
        for mode in modes:
            for n in (1, MAX_N):
                observe(model, mode, n, noise, rng)
    return model


def observe(model, mode, n, noise=None, rng=None):
    timings, request_ms = exact_timings(mode, n)
    scale = 1.0 if noise is None else noise(rng)
    model.observe(mode, n, {stage: ms * scale for stage, ms in timings.items()}, request_ms * scale)
    return request_ms * scale


def test_stage_rows_follow_the_mode_table():
    stages = ("tokenize", *MODES["vhs"].engines, overhead_stage("vhs"))
    assert stage_rows("vhs", stages, 6) == {
        "tokenize": 1,
        "text_encoder": 1,
        "dit_prefix": 6,
        "connector": 6,
        "llm": 6,
        "dit_suffix": 1,
        "vae_decoder": 1,
        "vhs overhead": 6,
    }
    clip = stage_rows("clip", ("dit_suffix", "vae_decoder", "clip_llm"), 5)
    assert clip == {"dit_suffix": 5, "vae_decoder": 5, "clip_llm": 5}
    assert set(stage_rows("none", (*MODES["none"].engines, overhead_stage("none")), 8).values()) == {1}


def test_fixed_and_per_row_costs_are_recovered_from_two_row_counts():
    model = calibrated()
    for stage, (fixed, per_row) in COSTS.items():
        np.testing.assert_allclose(model.stage_cost(stage), (fixed, per_row), atol=1e-9, err_msg=stage)
    np.testing.assert_allclose(model.stage_cost(overhead_stage("vhs")), OVERHEAD, atol=1e-9)
    for mode in MODES:
        for n in range(1, MAX_N + 1):
            np.testing.assert_allclose(model.typical_ms(mode, n), expected_typical_ms(mode, n), rtol=1e-9)


def test_no_prediction_before_two_row_counts_of_every_per_candidate_stage():
    model = LatencyModel()
    for _ in range(MIN_GROUP_SAMPLES - 1):
        observe(model, "vhs", 1)
    assert not model.can_predict("vhs", 1), "a row count enters the line after MIN_GROUP_SAMPLES times"
    observe(model, "vhs", 1)
    assert model.can_predict("vhs", 1) and not model.can_predict("vhs", 4)
    assert not model.is_calibrated("vhs", MAX_N)
    with pytest.raises(ValueError, match="'vhs' at N = 4"):
        model.predict_ms("vhs", 4)
    for _ in range(MIN_GROUP_SAMPLES):
        observe(model, "vhs", MAX_N)
    assert model.is_calibrated("vhs", MAX_N)
    assert not model.can_predict("clip", 1), "clip's own stages are unmeasured"


def test_mode_none_is_calibrated_by_one_n_and_fits_every_n_alike():
    model = calibrated(modes=("none",))
    assert model.is_calibrated("none", MAX_N)
    assert len({model.predict_ms("none", n) for n in range(1, MAX_N + 1)}) == 1
    n, predicted = model.largest_fitting("none", model.predict_ms("none", 1) + 1e-6, MAX_N)
    assert n == MAX_N and predicted == pytest.approx(model.predict_ms("none", 1))


def test_margin_is_the_prior_until_requests_were_measured_against_a_prediction():
    model = calibrated(modes=("vhs",), rounds=MIN_GROUP_SAMPLES)
    assert model.margin() == PRIOR_MARGIN
    for _ in range(MIN_RESIDUALS):
        observe(model, "vhs", 3)
    assert model.margin() == pytest.approx(1.0), "noise-free requests: every ratio is 1"


def test_largest_fitting_n_is_the_largest_whose_prediction_fits():
    model = calibrated(rounds=4)
    predicted = [model.predict_ms("vhs", n) for n in range(1, MAX_N + 1)]
    assert predicted == sorted(predicted)
    for n in range(1, MAX_N + 1):
        assert model.largest_fitting("vhs", predicted[n - 1], MAX_N) == (n, pytest.approx(predicted[n - 1]))
        assert model.largest_fitting("vhs", predicted[n - 1] * 0.999, MAX_N)[0] == max(n - 1, 1)
    assert model.largest_fitting("vhs", 1e9, 3)[0] == 3, "NUM_CANDIDATES caps N"


def test_a_budget_below_one_candidate_serves_n_1_and_says_it_does_not_fit():
    model = calibrated(rounds=4)
    n, predicted = model.largest_fitting("clip", 1.0, MAX_N)
    assert n == 1 and predicted == pytest.approx(model.predict_ms("clip", 1)) and predicted > 1.0


def test_a_larger_budget_never_gives_a_smaller_n():
    rng = np.random.default_rng(0)
    model = calibrated(rounds=6, noise=lambda rng: rng.lognormal(0.0, 0.2), rng=rng)
    for mode in MODES:
        chosen = [model.largest_fitting(mode, budget, MAX_N)[0] for budget in np.linspace(1, 200, 400)]
        assert chosen == sorted(chosen), mode


def test_noisy_requests_stay_within_the_predicted_time_at_the_quantile():
    """Requests slower by a heavy-tailed random factor (a shared machine): the prediction is a high
    quantile, so >= 90 % of fresh requests finish within it, while the mean alone would hold ~50 %."""
    rng = np.random.default_rng(1)

    def noise(rng):
        return rng.lognormal(0.0, 0.15) * (3.0 if rng.random() < 0.03 else 1.0)

    model = calibrated(rounds=3, noise=noise, rng=rng)
    within, within_typical, count = 0, 0, 400
    for i in range(count):
        mode, n = ("vhs", "clip", "latent")[i % 3], 1 + i % MAX_N
        predicted, typical = model.predict_ms(mode, n), model.typical_ms(mode, n)
        measured = observe(model, mode, n, noise, rng)
        within += measured <= predicted
        within_typical += measured <= typical
    assert within / count >= 0.9
    assert within_typical / count < 0.7


def test_one_slow_request_hardly_moves_the_prediction_but_a_slower_machine_does():
    """A slow request is evidence of the tail, which the margin carries; the stage lines stay."""
    model = calibrated(rounds=6)
    observe(model, "vhs", 4, noise=lambda rng: 10.0)
    assert model.typical_ms("vhs", 4) == pytest.approx(expected_typical_ms("vhs", 4), rel=0.01)
    for _ in range(model.stage_window):
        for n in (1, MAX_N):
            observe(model, "vhs", n, noise=lambda rng: 2.0)
    assert model.typical_ms("vhs", 4) == pytest.approx(2 * expected_typical_ms("vhs", 4), rel=0.01)
