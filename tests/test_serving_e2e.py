"""End to end through the real Triton server on the exported tiny-random repository: served results
equal the in-process reference pipeline, candidates do not depend on N, concurrent requests each get
their own answer, and bad input gets INVALID_ARG naming the field while the server keeps serving."""

import shutil

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from vhs import protocol as P
from vhs.benchmarks.queue_delay import engine_counts
from vhs.client.cli import main as cli_main
from vhs.client.vhs_client import ImageRequest, VHSClient, VHSRequestError
from vhs.launcher.server import TritonServer, TritonServerError
from vhs.modes import all_engines, mode_names

pytestmark = pytest.mark.server  # starts a real tritonserver

PROMPT = "a photo of a red circle left of a blue square"


@pytest.fixture(scope="module")
def server_at_start(exported_tiny, tmp_path_factory):
    """The running server and every model's (inferences, executions) before any client request."""
    with TritonServer(exported_tiny / "model_repository", build_dir="build/triton") as running:
        yield (
            running,
            engine_counts(running.grpc_url, (*all_engines(), P.ORCHESTRATOR_MODEL)),
        )


@pytest.fixture(scope="module")
def server(server_at_start):
    return server_at_start[0]


@pytest.fixture(scope="module")
def client(server):
    with VHSClient(server.grpc_url) as connected:
        yield connected


def assert_same_result(served, reference):
    assert served.selected == reference.selected
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.image.astype(int), reference.image.astype(int), atol=1)


@pytest.mark.parametrize("mode", mode_names())
def test_served_result_equals_reference_pipeline(client, tiny_pipeline, mode):
    served = client.generate(PROMPT, 6, 11, mode)
    reference = tiny_pipeline(PROMPT, 6, 11, mode)
    assert_same_result(served, reference)
    assert served.image.shape == (32, 32, 3) and served.image.dtype == np.uint8
    assert {"text_encoder", "dit_prefix", "vae_decoder"} <= set(served.timings_ms)


def test_cli_mode_none_all_writes_every_candidate(server, tmp_path, capsys):
    output = tmp_path / "none.png"
    argv = [
        "generate",
        PROMPT,
        "-n",
        "3",
        "--mode",
        "none",
        "--all",
        "-o",
        str(output),
        "--url",
        server.grpc_url,
    ]
    assert cli_main(argv) == 0
    assert "(3 candidates)" in capsys.readouterr().out
    assert (tmp_path / "none_all.png").is_file()


def test_candidate_i_is_the_same_whatever_n(client):
    results = {n: client.generate(PROMPT, n, 5, "clip", return_candidates=True) for n in (1, 4, 8)}
    eight = results[8].candidate_images
    assert eight.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(results[1].candidate_images, eight[:1])
    np.testing.assert_array_equal(results[4].candidate_images, eight[:4])
    np.testing.assert_allclose(results[4].scores, results[8].scores[:4], rtol=1e-5)


def test_vhs_contact_sheet_candidates_include_the_selected_image(client):
    result = client.generate(PROMPT, 4, 2, "vhs", return_candidates=True)
    np.testing.assert_array_equal(result.candidate_images[result.selected], result.image)


def test_engines_are_warmed_up_before_the_server_is_ready(server_at_start):
    """Every engine ran its `model_warmup` (zeros at batch 1, 4 and 8) while loading: no client request
    pays ONNX Runtime's first runs. Then each of the four orchestrator instances answered its one
    warm-up request, calibrating its latency model through the engines (more executions each); no
    client request has been served yet."""
    _, at_start = server_at_start
    for engine in all_engines():
        inferences, executions = at_start[engine]
        assert inferences > 1 + 4 + 8 and executions > 3, engine
    assert at_start[P.ORCHESTRATOR_MODEL] == (4, 4)


def test_eight_concurrent_requests_each_get_their_own_answer(server, client, tiny_pipeline):
    requests = [
        ImageRequest(f"a photo of {count} circles", num_candidates=4, seed=seed, mode="vhs")
        for seed, count in enumerate(["two", "three", "four", "five", "six", "seven", "eight", "nine"])
    ]
    before = engine_counts(server.grpc_url, ["dit_prefix"])["dit_prefix"]
    results = client.generate_many(requests, concurrency=8)
    after = engine_counts(server.grpc_url, ["dit_prefix"])["dit_prefix"]
    for request, result in zip(requests, results, strict=True):
        assert_same_result(result, tiny_pipeline(request.prompt, 4, request.seed, "vhs"))
    inferences, executions = (after[0] - before[0]), (after[1] - before[1])
    assert inferences == 8 * 4
    print(f"dit_prefix: {inferences} candidates in {executions} executions")
    assert executions <= 8, "every request sends its 4 candidates in one call"


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ("", {}, "PROMPT must be a non-empty string"),
        ("\x00\x00\x00", {}, "PROMPT has no visible text"),
        ("\u200b\u200c\u200d\ufeff", {}, "PROMPT has no visible text"),
        ("circle " * 40, {}, "PROMPT is .* tokens long; the limit is 32"),
        ("x" * 3000, {}, "PROMPT is 3000 characters long; the limit is 2000"),
        (PROMPT, {"num_candidates": 0}, r"NUM_CANDIDATES must be an integer in \[1, 8\], got 0"),
        (PROMPT, {"num_candidates": 9}, r"NUM_CANDIDATES must be an integer in \[1, 8\], got 9"),
        (PROMPT, {"mode": "best"}, "MODE must be one of vhs, clip, latent, none"),
        (PROMPT, {"seed": -1}, "SEED must be an integer"),
    ],
)
def test_bad_values_get_invalid_arg_naming_the_field(client, prompt, kwargs, message):
    with pytest.raises(VHSRequestError, match=message) as caught:
        client.generate(prompt, **kwargs)
    assert "INVALID_ARGUMENT" in str(caught.value.status)
    assert client.generate(PROMPT, 2, 0).image.shape == (32, 32, 3), "the server keeps serving"


def raw_infer(server, inputs):
    with grpcclient.InferenceServerClient(server.grpc_url) as triton:
        return triton.infer(P.ORCHESTRATOR_MODEL, inputs)


def tensor(name, array, datatype):
    value = grpcclient.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array)
    return value


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([tensor(P.PROMPT, np.array([b"\xff\xfe bad"], dtype=np.object_), "BYTES")], "PROMPT must be UTF-8"),
        (
            [
                tensor(P.PROMPT, np.array([PROMPT.encode()], dtype=np.object_), "BYTES"),
                tensor(P.NUM_CANDIDATES, np.array([2.0], dtype=np.float32), "FP32"),
            ],
            "NUM_CANDIDATES",
        ),
        ([tensor(P.PROMPT, np.array([b"a", b"b"], dtype=np.object_), "BYTES")], "PROMPT"),
        ([tensor(P.SEED, np.array([1], dtype=np.int64), "INT64")], "PROMPT is required"),
    ],
    ids=["non-utf8", "wrong-dtype", "wrong-shape", "missing-prompt"],
)
def test_malformed_requests_get_invalid_arg(server, client, inputs, message):
    with pytest.raises(InferenceServerException, match=message) as caught:
        raw_infer(server, inputs)
    assert "INVALID_ARGUMENT" in str(caught.value.status())
    assert client.generate(PROMPT, 1, 0).image.shape == (32, 32, 3), "the server keeps serving"


def test_server_refuses_a_repository_with_a_tampered_graph(exported_tiny, tmp_path):
    repository = tmp_path / "model_repository"
    shutil.copytree(exported_tiny / "model_repository", repository)
    # The same graph with another doc string: it loads and warms up, only the hash check can notice.
    graph_file = repository / "llm" / "1" / "model.onnx"
    graph = onnx.load(graph_file)
    graph.doc_string = "re-exported elsewhere"
    onnx.save(graph, graph_file)
    with pytest.raises(TritonServerError, match="engine 'llm'.*sha256"):
        TritonServer(repository, build_dir="build/triton", ready_timeout_s=120).start()


def test_server_refuses_an_engine_serving_another_graph(exported_tiny, tmp_path):
    repository = tmp_path / "model_repository"
    shutil.copytree(exported_tiny / "model_repository", repository)
    # The connector's graph where the LLM's belongs: the engine's load fails, before Triton's warm-up
    # would send it the LLM's inputs.
    shutil.copy2(repository / "connector" / "1" / "model.onnx", repository / "llm" / "1" / "model.onnx")
    with pytest.raises(TritonServerError, match="engine 'llm'.*not the one this model serves"):
        TritonServer(repository, build_dir="build/triton", ready_timeout_s=120).start()
