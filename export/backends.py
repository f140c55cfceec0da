"""How Triton runs the engine graphs: one record per backend, so nothing else branches on its name.

python          ONNX Runtime inside a Python-backend model (`model_repository/engine/1/model.py`);
                the PyPI-bundled Triton has only the Python backend: the CPU default
onnxruntime     Triton's ONNX Runtime backend (NGC container), on the CPU
onnxruntime_gpu the same on the GPU with ONNX Runtime's CUDA provider, serving the graph as the
                precision policy types it (export/precision.py: fp16 weight GEMMs, the rest fp32,
                the casts written into the graph, checked against fp32 at export); bf16 is refused
                (tensorrt_plan builds bf16)
tensorrt_plan   a TensorRT plan per engine, built from the graph with polygraphy (GPU)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

# The model files of the repository ship in the `vhs.model_repository` package (model_repository/),
# a folder on disk wherever the project is installed (it is never zipped).
MODEL_REPOSITORY_SOURCE = Path(str(files("vhs.model_repository")))
ENGINE_MODEL_PY = MODEL_REPOSITORY_SOURCE / "engine" / "1" / "model.py"


@dataclass(frozen=True)
class Backend:
    """One way of serving an engine graph.

    graph_file: the file placed in `<engine>/1/`. builds_plans: the graph is compiled to a TensorRT
    plan first (needs TensorRT, takes --precision). triton_backend / platform: the config field
    that selects it. model_py: a Python-backend model copied beside the graph, which reads the
    graph's file name from `parameters` instead of `default_model_filename`. precisions: what
    --precision may ask for (anything else is refused, never silently replaced). typed_graph: the
    served graph carries the engine's precision as casts (`precision.mixed_precision_graph`).
    """

    name: str
    graph_file: str
    instance_kind: int
    builds_plans: bool = False
    triton_backend: str = ""
    platform: str = ""
    model_py: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    precisions: tuple[str, ...] = ("fp32",)
    typed_graph: bool = False

    @property
    def on_gpu(self) -> bool:
        """Whether the engines run on a GPU (their outputs then stay in device memory)."""
        return self.instance_kind == mc.ModelInstanceGroup.KIND_GPU

    def configure(self, config: mc.ModelConfig, precision: str = "fp32") -> None:
        """Set the backend-specific fields of an engine's ModelConfig (`config.name` is the engine;
        `precision` the one the manifest records for it: it is in the graph or the plan itself)."""
        if self.triton_backend:
            config.backend = self.triton_backend
        if self.platform:
            config.platform = self.platform
        if self.model_py is None:
            config.default_model_filename = self.graph_file
        for key, value in self.parameters.items():
            config.parameters[key].string_value = value


BACKENDS = {
    backend.name: backend
    for backend in (
        Backend(
            "python",
            graph_file="model.onnx",
            instance_kind=mc.ModelInstanceGroup.KIND_CPU,
            triton_backend="python",
            model_py=ENGINE_MODEL_PY,
            # One ORT thread per instance: Triton's instances and dynamic batcher provide the parallelism.
            parameters={"onnx_file": "model.onnx", "intra_op_num_threads": "1"},
        ),
        Backend(
            "onnxruntime",
            graph_file="model.onnx",
            instance_kind=mc.ModelInstanceGroup.KIND_CPU,
            triton_backend="onnxruntime",
        ),
        Backend(
            "onnxruntime_gpu",
            graph_file="model.onnx",
            instance_kind=mc.ModelInstanceGroup.KIND_GPU,
            triton_backend="onnxruntime",
            precisions=("fp32", "fp16"),
            typed_graph=True,
        ),
        Backend(
            "tensorrt_plan",
            graph_file="model.plan",
            instance_kind=mc.ModelInstanceGroup.KIND_GPU,
            builds_plans=True,
            platform="tensorrt_plan",
            precisions=("fp32", "fp16", "bf16"),
        ),
    )
}
