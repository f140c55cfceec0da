"""The GPU model repositories as configs: the `onnxruntime_gpu` backend on KIND_GPU (ONNX Runtime's
CUDA provider running the graph as the precision policy typed it), beside the CPU `onnxruntime`
backend; the precisions each backend serves."""

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs.export.backends import BACKENDS
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


def test_each_backend_serves_only_the_precisions_it_can():
    assert BACKENDS["onnxruntime_gpu"].precisions == ("fp32", "fp16")
    assert BACKENDS["tensorrt_plan"].precisions == ("fp32", "fp16", "bf16")
    assert BACKENDS["python"].precisions == BACKENDS["onnxruntime"].precisions == ("fp32",)
    cpu = config_of("vae_decoder", "onnxruntime", "fp32")
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert not cpu.HasField("optimization")


def test_which_backends_run_on_the_gpu():
    assert {name for name, backend in BACKENDS.items() if backend.on_gpu} == {
        "onnxruntime_gpu",
        "tensorrt_plan",
    }
