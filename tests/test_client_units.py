"""Client pieces that need no server: request encoding, the printed table, the contact sheet and
the demo's picture."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.http
from PIL import Image

from vhs import protocol as P
from vhs.client.cli import format_result
from vhs.client.contact_sheet import (
    BACKGROUND,
    CAPTION_PIXELS,
    FRAME_PIXELS,
    GAP_PIXELS,
    SELECTED_COLOR,
    contact_sheet,
)
from vhs.client.demo import side_by_side
from vhs.client.vhs_client import GenerationResult, ImageRequest, build_inputs, request_parameters


@pytest.mark.parametrize("triton", [tritonclient.grpc, tritonclient.http])
def test_optional_inputs_are_sent_only_when_given(triton):
    assert [tensor.name() for tensor in build_inputs(triton, ImageRequest("a red circle"))] == [P.PROMPT]
    full = build_inputs(
        triton, ImageRequest("a red circle", num_candidates=4, seed=3, mode="clip", budget_ms=40.5)
    )
    assert {tensor.name(): tensor.datatype() for tensor in full} == {
        P.PROMPT: "BYTES",
        P.NUM_CANDIDATES: "INT32",
        P.SEED: "INT64",
        P.MODE: "BYTES",
        P.BUDGET_MS: "FP32",
    }


def test_return_candidates_parameter_is_sent_only_when_asked_for():
    assert request_parameters(ImageRequest("x")) is None
    assert request_parameters(ImageRequest("x", return_candidates=True)) == {P.RETURN_CANDIDATES: True}


def test_result_table_marks_the_selected_candidate_and_sums_stages():
    result = GenerationResult(
        image=np.zeros((8, 8, 3), np.uint8),
        scores=np.array([0.25, 0.75], np.float32),
        selected=1,
        timings_ms={"dit_prefix": 1.0, "llm": 2.0},
        candidate_images=None,
        round_trip_ms=4.0,
        num_candidates_used=2,
        predicted_ms=float("nan"),
        request_ms=3.5,
    )
    lines = format_result(result).splitlines()
    assert lines[1].split() == ["0", "0.2500"]
    assert lines[2].split() == ["1", "0.7500", "<-", "selected"]
    assert "sum of stages" in lines[-3] and lines[-3].split()[-1] == "3.00"
    assert "request (server)" in lines[-2] and lines[-2].split()[-1] == "3.50"


@pytest.mark.parametrize(
    ("predicted_ms", "verdict"), [(38.25, "(fits)"), (61.0, "(does not fit even at N = 1)")]
)
def test_result_table_with_a_budget_says_the_n_and_whether_it_fits(predicted_ms, verdict):
    result = GenerationResult(
        image=np.zeros((8, 8, 3), np.uint8),
        scores=np.array([0.5], np.float32),
        selected=0,
        timings_ms={"dit_prefix": 1.0},
        candidate_images=None,
        round_trip_ms=4.0,
        num_candidates_used=1,
        predicted_ms=predicted_ms,
        request_ms=3.5,
    )
    first = format_result(result, budget_ms=40.0).splitlines()[0]
    assert first == f"budget 40.00 ms: N = 1, predicted {predicted_ms:.2f} ms {verdict}"


def test_contact_sheet_frames_the_selected_candidate():
    candidates = np.full((4, 32, 32, 3), 200, dtype=np.uint8)
    sheet = contact_sheet(candidates, np.array([0.1, 0.2, 0.9, 0.3]), selected=2)
    pixels = np.asarray(sheet)
    tile = 32 * 4  # enlarged to at least 128 pixels so the caption fits
    cell_width = tile + 2 * FRAME_PIXELS + GAP_PIXELS
    cell_height = tile + 2 * FRAME_PIXELS + CAPTION_PIXELS + GAP_PIXELS
    assert pixels.shape == (2 * cell_height + GAP_PIXELS, 2 * cell_width + GAP_PIXELS, 3)
    first_corner = (GAP_PIXELS, GAP_PIXELS)  # candidate 0: row 0, column 0
    selected_corner = (GAP_PIXELS + cell_height, GAP_PIXELS)  # candidate 2: row 1, column 0
    assert tuple(pixels[first_corner]) == BACKGROUND
    assert tuple(pixels[selected_corner]) == SELECTED_COLOR
    inside = (selected_corner[0] + FRAME_PIXELS, selected_corner[1] + FRAME_PIXELS)
    assert tuple(pixels[inside]) == (200, 200, 200)


def test_contact_sheet_writes_each_verdict_under_its_candidate():
    candidates = np.full((2, 32, 32, 3), 200, dtype=np.uint8)
    scores = np.array([0.2, 0.8])
    plain = np.asarray(contact_sheet(candidates, scores, selected=1))
    judged = np.asarray(contact_sheet(candidates, scores, selected=1, verdicts=[False, True]))
    assert plain.shape == judged.shape
    caption_rows = slice(judged.shape[0] - CAPTION_PIXELS - GAP_PIXELS, None)
    assert not np.array_equal(plain[caption_rows], judged[caption_rows])  # the verdict is written
    assert np.array_equal(plain[: caption_rows.start], judged[: caption_rows.start])  # tiles unchanged
    with pytest.raises(ValueError, match="verdicts"):
        contact_sheet(candidates, scores, selected=1, verdicts=[True])


def test_mode_without_a_verifier_gets_a_sheet_and_a_table_without_scores():
    candidates = np.full((3, 8, 8, 3), 200, dtype=np.uint8)
    assert contact_sheet(candidates, np.zeros(0, np.float32), selected=0).width > 0
    result = GenerationResult(
        image=candidates[0],
        scores=np.zeros(0, np.float32),
        selected=0,
        timings_ms={"dit_prefix": 1.0},
        candidate_images=candidates,
        round_trip_ms=2.0,
        num_candidates_used=3,
        predicted_ms=float("nan"),
        request_ms=float("nan"),
    )
    assert format_result(result).splitlines()[0] == "candidate 0 selected (no verifier in this mode)"


def test_contact_sheet_names_the_bad_field():
    with pytest.raises(ValueError, match="scores"):
        contact_sheet(np.zeros((2, 8, 8, 3), np.uint8), np.array([0.5]), selected=0)
    with pytest.raises(ValueError, match="selected"):
        contact_sheet(np.zeros((2, 8, 8, 3), np.uint8), np.array([0.5, 0.5]), selected=2)
    with pytest.raises(ValueError, match="N = 0"):
        contact_sheet(np.zeros((0, 8, 8, 3), np.uint8), np.array([]), selected=0)


def blank_runs(ink: np.ndarray) -> list[int]:
    """Widths of the runs of columns without ink between the first and the last inked column."""
    columns = np.flatnonzero(ink)
    edges = np.flatnonzero(np.diff(ink[columns[0] : columns[-1] + 1].astype(int)))
    return [int(end - start) for start, end in zip(edges[::2], edges[1::2], strict=True)]


def test_the_demo_title_keeps_the_space_between_words():
    """The title line shows a gap of at least 3 px for each of its spaces. Pillow's default 10 px font
    drew a space 2 px wide, no wider than the gap between two letters: it read "a photoof twocircles"."""
    sheet = Image.new("RGB", (300, 40), "white")
    figure = np.asarray(side_by_side({"vhs": sheet}, "a photo of two circles").convert("L"))
    title_line = figure[: figure.shape[0] - sheet.height]
    gaps = blank_runs((title_line < 160).any(axis=0))
    spaces = 'vhs verifier: "a photo of two circles"'.count(" ")
    assert sum(gap >= 3 for gap in gaps) >= spaces, sorted(gaps, reverse=True)
