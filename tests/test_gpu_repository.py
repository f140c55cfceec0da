"""The GPU model repositories as configs: the `onnxruntime_gpu` backend on KIND_GPU (ONNX Runtime's
CUDA provider running the graph as the precision policy typed it), beside the CPU `onnxruntime`
backend; the precisions each backend serves."""

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs.export.backends import BACKENDS
from vhs.export.cli import main as export_main
from vhs.export.repository import Scheduling, engine_config

ENGINE = {
    "file": "model.onnx",
    "inputs": [{"name": "denoised_latents", "dtype": "float32", "shape": [-1, 32, 8, 8]}],
    "outputs": [{"name": "images", "dtype": "float32", "shape": [-1, 3, 32, 32]}],
}


def config_of(name, backend, precision):
    config = engine_config(
        name, {**ENGINE, "precision": precision}, BACKENDS[backend], 8, Scheduling(2, 2, 500)
    )
    return text_format.Parse(text_format.MessageToString(config), mc.ModelConfig())


def test_gpu_onnxruntime_config_runs_the_typed_graph_on_the_gpu():
    config = config_of("dit_prefix", "onnxruntime_gpu", "fp16")
    assert config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    # No TensorRT provider deciding precisions per layer on its own: the graph carries the policy.
    assert not config.HasField("optimization")
    assert BACKENDS["onnxruntime_gpu"].typed_graph


@pytest.mark.parametrize(
    ("backend", "precision"), [("python", "fp16"), ("onnxruntime", "bf16"), ("onnxruntime_gpu", "bf16")]
)
def test_an_export_at_a_precision_its_backend_cannot_serve_is_refused(backend, precision, tmp_path, capsys):
    output = tmp_path / "repository"
    argv = [
        "--preset",
        "tiny-random",
        "--output",
        str(output),
        "--backend",
        backend,
        "--precision",
        precision,
    ]
    assert export_main(argv) == 2
    assert f"--precision {precision} is not available with --backend {backend}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial repository


def test_the_gpu_backends_write_gpu_instances_and_the_cpu_ones_cpu_instances():
    kinds = {name: config_of("vae_decoder", name, "fp32").instance_group[0].kind for name in BACKENDS}
    assert {name for name, kind in kinds.items() if kind == mc.ModelInstanceGroup.KIND_GPU} == {
        "onnxruntime_gpu",
        "tensorrt_plan",
    }
    assert {name for name, kind in kinds.items() if kind == mc.ModelInstanceGroup.KIND_CPU} == {
        "python",
        "onnxruntime",
    }
    assert not config_of("vae_decoder", "onnxruntime", "fp32").HasField("optimization")
