"""The GPU model repositories as configs: the `onnxruntime_gpu` backend on KIND_GPU with ONNX
Runtime's TensorRT provider (precision per engine), beside the CPU `onnxruntime` backend."""

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs.export.backends import BACKENDS, ORT_TENSORRT_CACHE_DIR
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


def test_gpu_onnxruntime_config_runs_on_the_gpu_through_tensorrt():
    config = config_of("dit_prefix", "onnxruntime_gpu", "fp16")
    assert config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert accelerator.parameters["trt_engine_cache_path"] == f"{ORT_TENSORRT_CACHE_DIR}/dit_prefix"
    assert int(accelerator.parameters["max_workspace_size_bytes"]) >= 1 << 30


def test_the_vae_is_fp32_on_the_gpu_and_cpu_configs_have_no_accelerator():
    vae = config_of("vae_decoder", "onnxruntime_gpu", "fp32")
    assert (
        vae.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"]
        == "FP32"
    )
    cpu = config_of("vae_decoder", "onnxruntime", "fp32")
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert not cpu.HasField("optimization")


def test_which_backends_run_on_the_gpu():
    assert {name for name, backend in BACKENDS.items() if backend.on_gpu} == {
        "onnxruntime_gpu",
        "tensorrt_plan",
    }
