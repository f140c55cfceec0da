"""The launcher starts the real tritonserver (nvidia-pytriton's bundled one here) on a throwaway
model repository, reports failures with the server's log instead of hanging, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc

from vhs.benchmarks.perf_analyzer import parse_composing_models, run_perf_analyzer
from vhs.launcher.install import prepare_bundled_server
from vhs.launcher.server import TritonServer, TritonServerError

BUILD_DIR = Path(__file__).resolve().parents[1] / "build" / "triton"

STRING_MODEL_CONFIG = """\
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

UPPERCASE_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            upper = np.array([value.upper() for value in text], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", upper)]))
        return responses
"""

# BLS: calls `uppercase`, so perf_analyzer has a composing model to report.
UPPERCASE_VIA_BLS_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT")
            called = pb_utils.InferenceRequest(
                model_name="uppercase", requested_output_names=["UPPER"], inputs=[text]
            ).exec()
            upper = pb_utils.get_output_tensor_by_name(called, "UPPER")
            responses.append(pb_utils.InferenceResponse([upper]))
        return responses
"""

BROKEN_MODEL = """\
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model is broken on purpose")
"""


def write_model(repository: Path, name: str, model_py: str) -> None:
    version_dir = repository / name / "1"
    version_dir.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(STRING_MODEL_CONFIG)
    (version_dir / "model.py").write_text(model_py)


@pytest.fixture(scope="module")
def string_repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("string_models")
    write_model(repository, "uppercase", UPPERCASE_MODEL)
    write_model(repository, "uppercase_via_bls", UPPERCASE_VIA_BLS_MODEL)
    return repository


@pytest.fixture(scope="module")
def server(string_repository):
    with TritonServer(string_repository, build_dir=BUILD_DIR, ready_timeout_s=60) as running:
        yield running


def uppercase(grpc_url: str, text: str, model: str = "uppercase") -> bytes:
    client = tritonclient.grpc.InferenceServerClient(grpc_url)
    text_input = tritonclient.grpc.InferInput("TEXT", [1], "BYTES")
    text_input.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
    try:
        return client.infer(model, [text_input]).as_numpy("UPPER")[0]
    finally:
        client.close()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses (hex, as /proc/net/tcp* writes them) with a listening socket on `port`."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                addresses.add(address)
    return addresses


def test_bundled_server_is_prepared_once_with_the_stub_of_this_python(tmp_path):
    first = prepare_bundled_server(tmp_path)
    binary_mtime = first.binary.stat().st_mtime_ns
    second = prepare_bundled_server(tmp_path)
    assert second.binary == first.binary and second.binary.stat().st_mtime_ns == binary_mtime
    assert (second.backend_dir / "python" / "triton_python_backend_stub").is_file()
    assert (second.backend_dir / "python" / "libtriton_python.so").is_file()
    assert second.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in second.env["LD_LIBRARY_PATH"].split(os.pathsep)[0]


@pytest.mark.server
def test_server_is_ready_and_answers_grpc(server):
    assert server.is_ready()
    assert server.startup_s is not None and server.startup_s < 60
    assert uppercase(server.grpc_url, "hello triton") == b"HELLO TRITON"
    assert uppercase(server.grpc_url, "via bls", model="uppercase_via_bls") == b"VIA BLS"


@pytest.mark.server
def test_server_listens_on_loopback_only(server):
    # 127.0.0.1 as /proc/net/tcp writes it, and as /proc/net/tcp6 writes ::ffff:127.0.0.1 (gRPC listens so)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    for port in (server.http_port, server.grpc_port, server.metrics_port):
        addresses = listening_addresses(port)
        assert addresses and addresses <= loopback, f"port {port} listens on {addresses}"


@pytest.mark.server
def test_broken_model_repository_raises_with_the_server_log(tmp_path):
    write_model(tmp_path, "broken", BROKEN_MODEL)
    server = TritonServer(tmp_path, build_dir=BUILD_DIR, ready_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(TritonServerError, match="this model is broken on purpose") as raised:
        server.start()
    assert time.monotonic() - started < 30
    assert str(server.log_path) in str(raised.value)
    assert server.process.poll() is not None


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (the stub processes name their model's folder)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


@pytest.mark.server
def test_stop_ends_the_server_and_its_model_stubs(tmp_path):
    write_model(tmp_path, "uppercase", UPPERCASE_MODEL)
    server = TritonServer(tmp_path, build_dir=BUILD_DIR, ready_timeout_s=60).start()
    assert len(processes_mentioning(str(tmp_path))) >= 2  # the server and the model's stub
    server.stop()
    assert server.process.returncode == 0
    assert processes_mentioning(str(tmp_path)) == []
    assert not listening_addresses(server.grpc_port)


@pytest.mark.server
def test_vhs_serve_runs_until_sigterm_then_stops_everything(tmp_path):
    write_model(tmp_path, "uppercase", UPPERCASE_MODEL)
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    command = [sys.executable, "-m", "vhs.launcher.cli", "--model-repository", str(tmp_path), *ports]
    launcher = subprocess.Popen([*command, "--build-dir", str(BUILD_DIR)], stdout=subprocess.PIPE, text=True)
    try:
        banner = [launcher.stdout.readline() for _ in range(5)]
        assert banner[0].startswith("tritonserver ready"), banner
        grpc_url = banner[1].split()[-1]
        assert uppercase(grpc_url, "served") == b"SERVED"
    finally:
        launcher.send_signal(signal.SIGTERM)
        exit_code = launcher.wait(timeout=60)
    assert exit_code == 0
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.server
def test_perf_analyzer_reports_rows_and_composing_models(server, tmp_path):
    input_data = tmp_path / "input.json"
    input_data.write_text('{"data": [{"TEXT": ["hello"]}, {"TEXT": ["world"]}]}')
    report = run_perf_analyzer(
        "uppercase_via_bls",
        server.grpc_url,
        concurrency_range="1",
        input_data=input_data,
        bls_composing_models=["uppercase"],
        measurement_interval_ms=300,
        # This test is about running and parsing, not about timing: sub-millisecond requests on a
        # loaded 2-core runner can miss the default 10 % stability ("Failed to obtain stable measurement").
        extra_args=["--stability-percentage=100", "--max-trials=20"],
        build_dir=BUILD_DIR,
        timeout_s=120,
    )
    assert [row["Concurrency"] for row in report.rows] == [1.0]
    assert report.rows[0]["Inferences/Second"] > 0
    assert report.composing_models[1.0]["uppercase"]["inference_count"] > 0


def test_composing_model_stats_are_parsed_per_load_level():
    output = textwrap.dedent("""\
        Request concurrency: 2
          Server:
            Avg request latency: 1185 usec (overhead 1038 usec + queue 13 usec + compute 134 usec)

          Composing models:
          llm, version: 1
              Inference count: 2729
              Execution count: 1400
              Successful request count: 2729
              Avg request latency: 149 usec (overhead 2 usec + queue 13 usec + compute input 11 usec \
        + compute infer 109 usec + compute output 13 usec)

        Inferences/Second vs. Client Average Batch Latency
        Concurrency: 2, throughput: 1511.13 infer/sec, latency 1318 usec
        """)
    assert parse_composing_models(output) == {
        2.0: {
            "llm": {
                "inference_count": 2729.0,
                "execution_count": 1400.0,
                "successful_request_count": 2729.0,
                "request_latency_us": 149.0,
                "overhead_us": 2.0,
                "queue_us": 13.0,
                "compute_input_us": 11.0,
                "compute_infer_us": 109.0,
                "compute_output_us": 13.0,
            }
        }
    }
