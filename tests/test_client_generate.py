"""VHSClient and the vhs-client CLI against the real tritonserver serving a fake `vhs` model.

The fake implements the contract of vhs/protocol.py with deterministic outputs: candidate i of seed s
is a flat image of colour (s, i, len(prompt)), scores are numpy's default_rng(seed).random(N), and an
empty prompt or unknown mode is answered with Triton's INVALID_ARG.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vhs import protocol as P
from vhs.client.cli import main as cli_main
from vhs.client.contact_sheet import CAPTION_PIXELS, FRAME_PIXELS, GAP_PIXELS, MIN_TILE_PIXELS
from vhs.client.retry import RetryPolicy
from vhs.client.vhs_client import AsyncVHSClient, ImageRequest, VHSClient, VHSRequestError
from vhs.launcher.server import TritonServer

pytestmark = pytest.mark.server  # starts a real tritonserver

BUILD_DIR = Path(__file__).resolve().parents[1] / "build" / "triton"
IMAGE_SIDE = 16
DEFAULT_CANDIDATES = 4

FAKE_VHS_CONFIG = f"""\
backend: "python"
max_batch_size: 0
input [
  {{ name: "{P.PROMPT}" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "{P.NUM_CANDIDATES}" data_type: TYPE_INT32 dims: [ 1 ] optional: true }},
  {{ name: "{P.SEED}" data_type: TYPE_INT64 dims: [ 1 ] optional: true }},
  {{ name: "{P.MODE}" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "{P.BUDGET_MS}" data_type: TYPE_FP32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "{P.IMAGE}" data_type: TYPE_UINT8 dims: [ {IMAGE_SIDE}, {IMAGE_SIDE}, 3 ] }},
  {{ name: "{P.SCORES}" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "{P.SELECTED}" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "{P.TIMINGS}" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "{P.CANDIDATE_IMAGES}" data_type: TYPE_UINT8 dims: [ -1, {IMAGE_SIDE}, {IMAGE_SIDE}, 3 ] }},
  {{ name: "{P.NUM_CANDIDATES_USED}" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "{P.PREDICTED_MS}" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "{P.REQUEST_MS}" data_type: TYPE_FP32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

FAKE_VHS_MODEL = f"""\
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from vhs import protocol as P
from vhs.modes import DEFAULT_MODE, MODES

SIDE = {IMAGE_SIDE}


def scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else int(value)


def generate(request):
    prompt = scalar(request, P.PROMPT, "")
    count = scalar(request, P.NUM_CANDIDATES, {DEFAULT_CANDIDATES})
    seed = scalar(request, P.SEED, P.DEFAULT_SEED)
    mode = scalar(request, P.MODE, DEFAULT_MODE)
    if not prompt.strip():
        raise ValueError("PROMPT must be a non-empty string")
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {{', '.join(MODES)}}, got {{mode!r}}")
    candidates = np.zeros((count, SIDE, SIDE, 3), dtype=np.uint8)
    for index in range(count):
        candidates[index] = (seed % 256, index, len(prompt) % 256)
    scores = np.random.default_rng(seed).random(count).astype(np.float32)
    selected = int(np.argmax(scores))
    return_candidates = json.loads(request.parameters() or "{{}}").get(P.RETURN_CANDIDATES, False)
    timings = json.dumps({{"dit_prefix": 1.5, "llm": 2.5}}).encode()
    return pb_utils.InferenceResponse([
        pb_utils.Tensor(P.IMAGE, candidates[selected]),
        pb_utils.Tensor(P.SCORES, scores),
        pb_utils.Tensor(P.SELECTED, np.array([selected], dtype=np.int32)),
        pb_utils.Tensor(P.TIMINGS, np.array([timings], dtype=np.object_)),
        pb_utils.Tensor(P.CANDIDATE_IMAGES, candidates if return_candidates else candidates[:0]),
        # No budget planning in the fake: every request is served at the N it asked for.
        pb_utils.Tensor(P.NUM_CANDIDATES_USED, np.array([count], dtype=np.int32)),
        pb_utils.Tensor(P.PREDICTED_MS, np.array([np.nan], dtype=np.float32)),
        pb_utils.Tensor(P.REQUEST_MS, np.array([4.0], dtype=np.float32)),
    ])


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(generate(request))
            except ValueError as error:
                invalid = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=invalid))
        return responses
"""


def expected_scores(seed: int, count: int = DEFAULT_CANDIDATES) -> np.ndarray:
    return np.random.default_rng(seed).random(count).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("fake_vhs_repository")
    (repository / P.ORCHESTRATOR_MODEL / "1").mkdir(parents=True)
    (repository / P.ORCHESTRATOR_MODEL / "config.pbtxt").write_text(FAKE_VHS_CONFIG)
    (repository / P.ORCHESTRATOR_MODEL / "1" / "model.py").write_text(FAKE_VHS_MODEL)
    with TritonServer(repository, build_dir=BUILD_DIR, ready_timeout_s=60) as running:
        yield running


@pytest.fixture(params=["grpc", "http"])
def client(server, request):
    url = server.grpc_url if request.param == "grpc" else server.http_url
    with VHSClient(url, protocol=request.param) as connected:
        yield connected


def test_generate_returns_the_selected_candidate_and_its_scores(client):
    assert client.is_ready()
    result = client.generate("a photo of a red circle", num_candidates=3, seed=7)
    scores = expected_scores(7, 3)
    np.testing.assert_array_equal(result.scores, scores)
    assert result.scores.dtype == np.float32
    assert result.selected == int(np.argmax(scores))
    assert result.image.dtype == np.uint8 and result.image.shape == (IMAGE_SIDE, IMAGE_SIDE, 3)
    assert tuple(result.image[0, 0]) == (7, result.selected, len("a photo of a red circle"))
    assert result.timings_ms == {"dit_prefix": 1.5, "llm": 2.5}
    assert result.candidate_images is None
    assert result.round_trip_ms > 0


def test_server_defaults_apply_when_optional_inputs_are_left_out(client):
    result = client.generate("a blue square")
    np.testing.assert_array_equal(result.scores, expected_scores(P.DEFAULT_SEED))


def test_return_candidates_brings_every_candidate_image(client):
    result = client.generate("two green triangles", num_candidates=5, seed=1, return_candidates=True)
    assert result.candidate_images.shape == (5, IMAGE_SIDE, IMAGE_SIDE, 3)
    assert [int(image[0, 0, 1]) for image in result.candidate_images] == list(range(5))
    np.testing.assert_array_equal(result.candidate_images[result.selected], result.image)


def test_server_side_invalid_argument_surfaces_with_tritons_message(client):
    with pytest.raises(VHSRequestError, match="PROMPT must be a non-empty string") as raised:
        client.generate("   ")
    assert raised.value.status in ("StatusCode.INVALID_ARGUMENT", "400")
    with pytest.raises(VHSRequestError, match="MODE must be one of"):
        client.generate("a red circle", mode="dream")


def test_generate_many_runs_eight_concurrent_requests_in_order(server):
    requests = [ImageRequest(f"prompt {seed}", num_candidates=2, seed=seed) for seed in range(8)]
    with VHSClient(server.grpc_url) as client:
        results = client.generate_many(requests, concurrency=8)
    assert [int(result.image[0, 0, 0]) for result in results] == list(range(8))
    for seed, result in enumerate(results):
        np.testing.assert_array_equal(result.scores, expected_scores(seed, 2))


def test_generate_many_raises_the_failing_requests_error(server):
    with VHSClient(server.grpc_url) as client, pytest.raises(VHSRequestError, match="PROMPT"):
        client.generate_many(["fine", "", "also fine"], concurrency=3)


def test_async_client_generates_concurrently(server):
    async def generate_all():
        async with AsyncVHSClient(server.grpc_url) as client:
            return await client.generate_many([ImageRequest("a circle", seed=seed) for seed in range(8)])

    results = asyncio.run(generate_all())
    assert [int(result.image[0, 0, 0]) for result in results] == list(range(8))


def test_unreachable_server_is_a_request_error():
    quick_retry = RetryPolicy(attempts=2, first_delay_s=0.01, max_delay_s=0.01)
    with VHSClient("127.0.0.1:1", timeout_s=5, retry=quick_retry) as client:
        with pytest.raises(VHSRequestError, match="UNAVAILABLE"):
            client.generate("a red circle")


def test_cli_writes_the_selected_image_and_prints_scores(server, tmp_path, capsys):
    output = tmp_path / "out.png"
    argv = ["generate", "a photo of a red circle", "-n", "4", "--seed", "0", "--mode", "vhs"]
    exit_code = cli_main([*argv, "-o", str(output), "--url", server.grpc_url])
    printed = capsys.readouterr().out
    assert exit_code == 0
    assert Image.open(output).size == (IMAGE_SIDE, IMAGE_SIDE)
    assert "<- selected" in printed and "dit_prefix" in printed and "round trip (client)" in printed
    assert not (tmp_path / "out_all.png").exists()


def test_cli_all_writes_a_contact_sheet(server, tmp_path):
    output = tmp_path / "circle.png"
    argv = ["generate", "a red circle", "-n", "3", "--all", "-o", str(output)]
    assert cli_main([*argv, "--protocol", "http", "--url", server.http_url]) == 0
    sheet = Image.open(tmp_path / "circle_all.png")
    # Three tiles in a 2 x 2 grid, each enlarged to the contact sheet's minimum tile size.
    tile = math.ceil(MIN_TILE_PIXELS / IMAGE_SIDE) * IMAGE_SIDE
    cell_width = tile + 2 * FRAME_PIXELS + GAP_PIXELS
    cell_height = tile + 2 * FRAME_PIXELS + CAPTION_PIXELS + GAP_PIXELS
    assert sheet.size == (2 * cell_width + GAP_PIXELS, 2 * cell_height + GAP_PIXELS)


def test_cli_reports_a_server_error_in_one_line_and_exits_nonzero(server, tmp_path, capsys):
    exit_code = cli_main(["generate", "", "-o", str(tmp_path / "out.png"), "--url", server.grpc_url])
    error_output = capsys.readouterr().err.strip()
    assert exit_code == 1
    assert error_output.startswith("error:") and "PROMPT must be a non-empty string" in error_output
    assert len(error_output.splitlines()) == 1
    assert not (tmp_path / "out.png").exists()
