import time

import numpy as np
import pytest

from vhs import engine_names
from vhs.errors import InvalidRequest
from vhs.noise import candidate_noise

PROMPT = "a photo of a red circle"


def test_noise_of_candidate_depends_only_on_seed_and_index():
    shape = (4, 8, 8)
    all_eight = candidate_noise(5, range(8), shape)
    np.testing.assert_array_equal(candidate_noise(5, [3], shape)[0], all_eight[3])
    np.testing.assert_array_equal(candidate_noise(5, range(4), shape), all_eight[:4])
    assert not np.array_equal(candidate_noise(6, [3], shape)[0], all_eight[3])


@pytest.mark.parametrize("mode", ["clip", "latent"])
def test_candidate_is_the_same_image_whatever_n(tiny_pipeline, mode):
    """Candidate i's image and score do not depend on N or on batching."""
    out_8 = tiny_pipeline(PROMPT, num_candidates=8, seed=1, mode=mode, return_candidates=True)
    out_4 = tiny_pipeline(PROMPT, num_candidates=4, seed=1, mode=mode, return_candidates=True)
    out_1 = tiny_pipeline(PROMPT, num_candidates=1, seed=1, mode=mode, return_candidates=True)
    np.testing.assert_allclose(out_4.candidate_images, out_8.candidate_images[:4], atol=1)
    np.testing.assert_allclose(out_1.candidate_images, out_8.candidate_images[:1], atol=1)
    np.testing.assert_allclose(out_4.scores, out_8.scores[:4], rtol=1e-5, atol=1e-6)


def test_vhs_selects_argmax_and_returns_that_candidate(tiny_pipeline):
    out = tiny_pipeline(PROMPT, num_candidates=8, seed=2, mode="vhs", return_candidates=True)
    assert out.scores.shape == (8,) and out.scores.dtype == np.float32
    assert np.all((out.scores > 0) & (out.scores < 1))
    assert out.selected == int(np.argmax(out.scores))
    assert len(set(np.round(out.scores, 6))) == 8, "random verifier should separate candidates"
    np.testing.assert_array_equal(out.image, out.candidate_images[out.selected])
    assert out.image.shape == (32, 32, 3) and out.image.dtype == np.uint8


def test_none_mode_is_candidate_zero(tiny_pipeline):
    best_of_1 = tiny_pipeline(PROMPT, num_candidates=8, seed=4, mode="none")
    best_of_8 = tiny_pipeline(PROMPT, num_candidates=8, seed=4, mode="vhs", return_candidates=True)
    assert best_of_1.selected == 0 and best_of_1.scores.shape == (0,)
    np.testing.assert_array_equal(best_of_1.image, best_of_8.candidate_images[0])


def test_seed_changes_the_image(tiny_pipeline):
    a = tiny_pipeline(PROMPT, num_candidates=1, seed=0, mode="none").image
    b = tiny_pipeline(PROMPT, num_candidates=1, seed=1, mode="none").image
    assert not np.array_equal(a, b)


def count_rows(pipeline, engine_name, counter):
    def hook(module, args, output):
        counter[engine_name] = counter.get(engine_name, 0) + args[0].shape[0]

    return pipeline.engines[engine_name].module.register_forward_hook(hook)


@pytest.mark.parametrize(("mode", "expected_rows"), [("vhs", 1), ("latent", 6), ("clip", 6), ("none", 1)])
def test_suffix_and_decoder_rows_per_request(tiny_pipeline, mode, expected_rows):
    """VHS finishes and decodes only the winner; the baselines run the suffix for all N candidates."""
    rows = {}
    handles = [
        count_rows(tiny_pipeline, name, rows)
        for name in (engine_names.DIT_PREFIX, engine_names.DIT_SUFFIX, engine_names.VAE_DECODER)
    ]
    try:
        tiny_pipeline(PROMPT, num_candidates=6, seed=0, mode=mode)
    finally:
        for handle in handles:
            handle.remove()
    assert rows[engine_names.DIT_PREFIX] == (1 if mode == "none" else 6)
    assert rows[engine_names.DIT_SUFFIX] == expected_rows
    assert rows[engine_names.VAE_DECODER] == (6 if mode == "clip" else 1)


def test_timings_name_every_stage_run_and_fit_in_the_call(tiny_pipeline):
    start = time.perf_counter()
    out = tiny_pipeline(PROMPT, num_candidates=2, seed=0, mode="vhs")
    wall_ms = (time.perf_counter() - start) * 1e3
    assert list(out.timings_ms) == [
        "tokenize",
        engine_names.TEXT_ENCODER,
        engine_names.DIT_PREFIX,
        engine_names.CONNECTOR,
        engine_names.LLM,
        engine_names.DIT_SUFFIX,
        engine_names.VAE_DECODER,
    ]
    # Each stage is timed once, not nested in another: together they fit in the call's wall time.
    assert sum(out.timings_ms.values()) <= wall_ms


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_candidates": 0}, "NUM_CANDIDATES"),
        ({"num_candidates": 9}, "NUM_CANDIDATES"),
        ({"num_candidates": 2.0}, "NUM_CANDIDATES"),
        ({"mode": "best"}, "MODE"),
        ({"seed": -1}, "SEED"),
        ({"seed": 2**63}, "SEED"),
        ({"prompt": ""}, "PROMPT"),
        ({"prompt": "   "}, "PROMPT"),
        ({"prompt": "circle " * 40}, "PROMPT is .* tokens long; the limit is 32"),
        ({"prompt": "x" * 2001}, "PROMPT is 2001 characters"),
    ],
)
def test_bad_arguments_raise_invalid_request_naming_the_field(tiny_pipeline, kwargs, field):
    arguments = {"prompt": PROMPT, **kwargs}
    with pytest.raises(InvalidRequest, match=field):
        tiny_pipeline(**arguments)
