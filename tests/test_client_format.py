"""The CLI's result table never shows a NaN: a request the server did not time (it also decoded every
candidate, REQUEST_MS NaN) says so in words (issue 27)."""

import numpy as np

from vhs.client.cli import format_result
from vhs.client.vhs_client import GenerationResult


def result(request_ms):
    return GenerationResult(
        image=np.zeros((8, 8, 3), np.uint8),
        scores=np.array([0.25, 0.75], np.float32),
        selected=1,
        timings_ms={"dit_prefix": 1.0, "llm": 2.0},
        candidate_images=np.zeros((2, 8, 8, 3), np.uint8),
        round_trip_ms=4.0,
        num_candidates_used=2,
        predicted_ms=float("nan"),
        request_ms=request_ms,
    )


def test_an_untimed_request_prints_no_nan():
    table = format_result(result(float("nan")))
    assert "nan" not in table.lower()
    server_line = next(line for line in table.splitlines() if line.startswith("request (server)"))
    assert server_line.split()[2:] == ["-", "(not", "timed:", "candidates", "decoded)"]


def test_a_timed_request_prints_its_server_time():
    table = format_result(result(3.5))
    server_line = next(line for line in table.splitlines() if line.startswith("request (server)"))
    assert server_line.split()[-1] == "3.50" and "nan" not in table.lower()
