"""The exporter on the tiny-random preset: graphs, parity, configs, manifest, errors, TensorRT path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs import protocol as P
from vhs.engine_names import DIT_PREFIX
from vhs.export.backends import BACKENDS
from vhs.export.graphs import graph_io
from vhs.export.repository import (
    TRITON_DTYPES,
    Scheduling,
    engine_config,
    orchestrator_config,
    warmup_batch_sizes,
    warmup_samples,
)
from vhs.export.tensorrt import TensorRTUnavailable, require_tensorrt
from vhs.modes import all_engines
from vhs.runtime.manifest import ManifestError, load_manifest, verify_engine_files
from vhs.runtime.onnx_engine import OnnxEngine


def read_config(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_every_engine_is_exported_with_a_matching_hash(exported_tiny):
    manifest = load_manifest(exported_tiny / "manifest.json")
    assert set(manifest["engines"]) == set(all_engines())
    assert manifest["preset"]["split_block"] == 7
    verify_engine_files(manifest, exported_tiny / "model_repository")
    report = (exported_tiny / "export_report.md").read_text()
    assert all(name in report for name in all_engines())


@pytest.mark.parametrize("name", all_engines())
def test_engine_config_names_the_graphs_tensors(exported_tiny, name):
    config = read_config(exported_tiny / "model_repository" / name / "config.pbtxt")
    inputs, outputs = graph_io(exported_tiny / "model_repository" / name / "1" / "model.onnx")
    assert config.backend == "python" and config.max_batch_size == 8
    assert config.HasField("dynamic_batching")
    for declared, graph in [(config.input, inputs), (config.output, outputs)]:
        assert [t.name for t in declared] == [g["name"] for g in graph]
        for tensor, graph_tensor in zip(declared, graph, strict=True):
            assert mc.DataType.Name(tensor.data_type) == TRITON_DTYPES[graph_tensor["dtype"]]
            assert list(tensor.dims) == (graph_tensor["shape"][1:] or [1])
            assert tensor.HasField("reshape") == (len(graph_tensor["shape"]) == 1)


def test_orchestrator_config_is_the_protocol(exported_tiny):
    config = read_config(exported_tiny / "model_repository" / "vhs" / "config.pbtxt")
    assert config.max_batch_size == 0 and config.backend == "python"
    inputs = {t.name: t for t in config.input}
    assert list(inputs) == [P.PROMPT, P.NUM_CANDIDATES, P.SEED, P.MODE, P.BUDGET_MS]
    assert not inputs[P.PROMPT].optional and all(
        inputs[n].optional for n in (P.NUM_CANDIDATES, P.SEED, P.MODE, P.BUDGET_MS)
    )
    assert mc.DataType.Name(inputs[P.SEED].data_type) == "TYPE_INT64"
    assert mc.DataType.Name(inputs[P.BUDGET_MS].data_type) == "TYPE_FP32"
    outputs = {t.name: list(t.dims) for t in config.output}
    assert outputs == {
        P.IMAGE: [32, 32, 3],
        P.SCORES: [-1],
        P.SELECTED: [1],
        P.TIMINGS: [1],
        P.CANDIDATE_IMAGES: [-1, 32, 32, 3],
        P.NUM_CANDIDATES_USED: [1],
        P.PREDICTED_MS: [1],
        P.REQUEST_MS: [1],
    }
    version = exported_tiny / "model_repository" / "vhs" / "1"
    assert {"model.py", "manifest.json", "tokenizer", "llm_tokenizer"} <= {p.name for p in version.iterdir()}


def random_feed(session, batch, rng):
    """Random inputs of the right dtype and shape; integer inputs are ids/masks/lengths in range."""
    feed = {}
    for tensor in session.get_inputs():
        shape = [batch if i == 0 else (d if isinstance(d, int) else 16) for i, d in enumerate(tensor.shape)]
        if tensor.type == "tensor(int64)":
            feed[tensor.name] = rng.integers(1, 8, size=shape).astype(np.int64)
        else:
            feed[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


@pytest.mark.parametrize("name", all_engines())
@pytest.mark.parametrize("batch", [1, 4])
def test_graphs_have_no_nan_on_random_inputs(exported_tiny, name, batch):
    """The silent-NaN pitfall: an optimiser that drops Sana's 1e-15 epsilons makes 0/0 somewhere."""
    session = ort.InferenceSession(
        str(exported_tiny / "onnx" / f"{name}.onnx"), providers=["CPUExecutionProvider"]
    )
    feed = random_feed(session, batch, np.random.default_rng(0))
    if name == DIT_PREFIX:
        feed["timestep"] = np.full(batch, 1.5708, dtype=np.float32)
    for output in session.run(None, feed):
        assert np.isfinite(output).all()
        assert output.shape[0] == batch


def test_parity_of_every_graph_at_batch_1_and_4(tiny_preset, exported_tiny):
    from vhs.engines import build_engines
    from vhs.export.graphs import example_inputs
    from vhs.export.parity import ATOL, check_parity

    engines = build_engines(tiny_preset)
    inputs = example_inputs(tiny_preset, engines, 2)
    for name in all_engines():
        for batch in (1, 4):
            result = check_parity(engines[name], inputs[name], exported_tiny / "onnx" / f"{name}.onnx", batch)
            assert result.passed and result.max_abs_error < ATOL, (name, batch, result)


def test_onnx_engine_batches_requests_and_splits_them_back(exported_tiny):
    compute_s = []
    engine = OnnxEngine(
        str(exported_tiny / "onnx" / "connector.onnx"), ["visual_tokens"], on_compute=compute_s.append
    )
    rng = np.random.default_rng(1)
    requests = [{"hidden_states": rng.standard_normal((n, 64, 16)).astype(np.float32)} for n in (1, 3, 2)]
    batched = engine.run_batched(requests)
    assert len(compute_s) == 1 and compute_s[0] > 0, "one session run for the three requests, timed"
    for request, output in zip(requests, batched, strict=True):
        alone = engine.run_batched([request])[0]["visual_tokens"]
        assert output["visual_tokens"].shape == (len(request["hidden_states"]), 64, 32)
        np.testing.assert_allclose(output["visual_tokens"], alone, rtol=1e-5, atol=1e-6)


def test_a_tampered_graph_is_refused(exported_tiny, tmp_path):
    import shutil

    repository = tmp_path / "model_repository"
    shutil.copytree(exported_tiny / "model_repository", repository)
    manifest = load_manifest(repository / "vhs" / "1" / "manifest.json")
    with open(repository / "connector" / "1" / "model.onnx", "ab") as graph:
        graph.write(b"\0")
    with pytest.raises(ManifestError, match="engine 'connector'.*sha256.*mixes two exports"):
        verify_engine_files(manifest, repository)


def test_manifest_of_another_format_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ManifestError, match="format_version 99"):
        load_manifest(tmp_path / "manifest.json")


def run_export(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "vhs.export.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture()
def without_tensorrt(tmp_path_factory, monkeypatch):
    """A host where `import tensorrt` fails, whether or not TensorRT is installed: in this process
    (sys.modules) and in a subprocess (environment whose PYTHONPATH shadows the package)."""
    shadow = tmp_path_factory.mktemp("no-tensorrt")
    (shadow / "tensorrt.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file')\n"
    )
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow  # vhs-export in a fresh Python
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--preset", "no-such-preset"], "preset must be one of"),
        (
            ["--preset", "tiny-random", "--split-block", "20"],
            r"split_block \(l\*\) must be an integer in \[0, 19\]",
        ),
        (["--preset", "tiny-random", "--trt"], "--trt needs TensorRT"),
    ],
)
def test_bad_export_arguments_give_one_error_line_and_leave_nothing(
    tmp_path, without_tensorrt, arguments, message
):
    completed = run_export(*arguments, "--output", str(tmp_path / "out"), env=without_tensorrt)
    assert completed.returncode == 2
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("vhs-export: error:")]
    assert len(error_lines) == 1 and __import__("re").search(message, error_lines[0]), completed.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # vhs-export in a fresh Python
def test_unwritable_output_folder_is_one_error_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    completed = run_export("--preset", "tiny-random", "--output", str(blocker / "out"))
    assert completed.returncode == 2
    assert "vhs-export: error:" in completed.stderr and "Traceback" not in completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.slow  # vhs-export in a fresh Python
def test_missing_tensorrt_says_how_to_get_it(without_tensorrt):
    with pytest.raises(TensorRTUnavailable, match="pypi.nvidia.com"):
        require_tensorrt()


def test_tensorrt_plan_config():
    engine = {
        "file": "model.plan",
        "inputs": [{"name": "noise", "dtype": "float16", "shape": [-1, 32, 32, 32]}],
        "outputs": [{"name": "hidden_states", "dtype": "float16", "shape": [-1, 1024, 2240]}],
    }
    config = text_format.Parse(
        text_format.MessageToString(
            engine_config("dit_prefix", engine, BACKENDS["tensorrt_plan"], 8, Scheduling(2, 2, 100))
        ),
        mc.ModelConfig(),
    )
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert (
        config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        and config.instance_group[0].count == 2
    )
    assert mc.DataType.Name(config.input[0].data_type) == "TYPE_FP16" and list(config.input[0].dims) == [
        32,
        32,
        32,
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100


def test_onnxruntime_backend_config():
    engine = {
        "file": "model.onnx",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1]}],
    }
    config = engine_config("connector", engine, BACKENDS["onnxruntime"], 8, Scheduling(1, 2, 500))
    assert config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
    assert not config.parameters


def test_source_model_repository_shows_the_configs_the_exporter_writes():
    """model_repository/*/config.pbtxt show the contract without exporting; they must not drift."""
    source = Path(__file__).resolve().parent.parent / "model_repository"
    assert read_config(source / "vhs" / "config.pbtxt") == orchestrator_config(
        [64, 64, 3], Scheduling.orchestrator_instances
    )
    template = read_config(source / "engine" / "config.pbtxt")
    connector = {
        "file": "model.onnx",
        "inputs": [{"name": "hidden_states", "dtype": "float32", "shape": [-1, 64, 64]}],
        "outputs": [{"name": "visual_tokens", "dtype": "float32", "shape": [-1, 64, 64]}],
    }
    warmup = warmup_samples(connector, warmup_batch_sizes(4, 16), {})
    assert template == engine_config("connector", connector, BACKENDS["python"], 16, Scheduling(), warmup)


def test_engine_warmup_samples_fit_every_graph(exported_tiny):
    """Triton runs each engine's `model_warmup` before the model is ready: zeros at batch 1, the
    default N and the largest batch, in shapes the graph accepts (an LLM's visual-token count is its
    visual encoder's)."""
    import onnxruntime as ort

    for name in all_engines():
        config = read_config(exported_tiny / "model_repository" / name / "config.pbtxt")
        samples = list(config.model_warmup)
        assert [sample.batch_size for sample in samples] == [1, 4, 8], name
        session = ort.InferenceSession(
            str(exported_tiny / "onnx" / f"{name}.onnx"), providers=["CPUExecutionProvider"]
        )
        inputs = {i.name: i for i in config.input}
        for sample in samples:
            assert set(sample.inputs) == set(inputs), name
            feed = {}
            for input_name, warm in sample.inputs.items():
                assert warm.zero_data and warm.data_type == inputs[input_name].data_type
                dtype = next(k for k, v in TRITON_DTYPES.items() if v == mc.DataType.Name(warm.data_type))
                dims = [] if inputs[input_name].HasField("reshape") else list(warm.dims)
                feed[input_name] = np.zeros([sample.batch_size, *dims], dtype=dtype)
            outputs = session.run(None, feed)
            assert all(len(output) == sample.batch_size for output in outputs), name


@pytest.mark.parametrize("reads", ["hidden_states", "denoised_latents"])
def test_a_prompt_reading_connector_exports_with_its_prompt_inputs(tmp_path, reads):
    """The `shapes` connectors read the DiT's prompt inputs: the graph declares them, batch dynamic,
    and ONNX Runtime gives the module's tokens at other batch sizes (the bare connector of VHS, and
    the AE-latent wrapper around one)."""
    import torch

    from vhs.engines import PROMPT_INPUTS, Engine
    from vhs.export.cleanup import clean_graph
    from vhs.export.graphs import export_onnx
    from vhs.export.parity import ATOL, check_parity
    from vhs.export.tensorrt_support import check_tensorrt_readiness, load_support_table
    from vhs.verifier import LatentVisualEncoder, MLPConnector

    torch.manual_seed(0)
    connector = MLPConnector(16, 8, prompt_width=12).eval()
    for block in connector.film_blocks:
        block.gate.data.fill_(0.5)  # a trained connector's blocks are open
    module = connector if reads == "hidden_states" else LatentVisualEncoder(connector).eval()
    engine = Engine(module, (reads, *PROMPT_INPUTS), ("visual_tokens",))
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, 3:] = 0
    features = torch.randn(2, 16, 16) if reads == "hidden_states" else torch.randn(2, 16, 4, 4)
    inputs = {reads: features, "prompt_embeds": torch.randn(2, 5, 12), "prompt_attention_mask": mask}
    graph = export_onnx("connector", engine, inputs, tmp_path, opset=18)
    declared, _ = graph_io(graph)
    assert [i["name"] for i in declared] == [reads, *PROMPT_INPUTS]
    assert [i["shape"] for i in declared][1:] == [[-1, 5, 12], [-1, 5]]
    for batch in (1, 3):
        result = check_parity(engine, inputs, graph, batch)
        assert result.passed and result.max_abs_error < ATOL, (batch, result)
    clean_graph(graph)  # as the exporter does before TensorRT
    assert check_tensorrt_readiness(graph, load_support_table()) == []  # e.g. no Clip on int64
