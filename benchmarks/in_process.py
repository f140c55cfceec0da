"""The served request path without a server: an exported repository's ONNX graphs in ONNX Runtime,
in this process, driven by the same `BestOfN` steps as the Triton orchestrator.

Served time over this pipeline's time is what Triton adds (gRPC, the orchestrator's queue, BLS
hops, tensor copies between the stub processes) on top of the same graphs with the same ONNX
Runtime session settings (each engine's `intra_op_num_threads` from its config.pbtxt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs import protocol as P
from vhs.best_of_n import BestOfN, GenerationOutput, Tensors, run_steps
from vhs.modes import adopt_table_entries
from vhs.preset_config import PresetConfig
from vhs.request import parse_request
from vhs.runtime.manifest import MANIFEST_FILE, load_manifest, verify_engine_files
from vhs.runtime.onnx_engine import OnnxEngine
from vhs.runtime.orchestrator import load_prompt_tokenizer

DEFAULT_INTRA_OP_THREADS = 1


def intra_op_threads(model_folder: Path) -> int:
    """The ONNX Runtime thread count an engine model's config.pbtxt gives its Python-backend stub."""
    config = text_format.Parse((model_folder / "config.pbtxt").read_text(), mc.ModelConfig())
    parameter = config.parameters.get("intra_op_num_threads")
    return int(parameter.string_value) if parameter is not None else DEFAULT_INTRA_OP_THREADS


class InProcessPipeline:
    """`pipeline(prompt, N, seed, mode) -> GenerationOutput` on a model repository's graphs, no server."""

    def __init__(self, repository: str | Path):
        repository = Path(repository)
        model_dir = repository / P.ORCHESTRATOR_MODEL / "1"
        manifest = load_manifest(model_dir / MANIFEST_FILE)
        verify_engine_files(manifest, repository)
        adopt_table_entries(manifest["modes"])  # the modes the repository was exported with
        self.config = PresetConfig(**manifest["preset"])
        self.prompt_tokenizer = load_prompt_tokenizer(model_dir, self.config)
        self.best_of_n = BestOfN(
            tuple(manifest["latent_shape"]), self.config.max_timesteps, self.config.guidance_scale
        )
        self.input_dtypes = {
            name: {item["name"]: item["dtype"] for item in spec["inputs"]}
            for name, spec in manifest["engines"].items()
        }
        self.engines = {
            name: OnnxEngine(
                str(repository / name / "1" / spec["file"]),
                [item["name"] for item in spec["outputs"]],
                intra_op_threads(repository / name),
            )
            for name, spec in manifest["engines"].items()
        }

    def __call__(self, prompt: str, num_candidates: int, seed: int, mode: str) -> GenerationOutput:
        """The response the server would give: image (H, W, 3) uint8, scores (N,), selected index."""
        request = parse_request(self.config, self.prompt_tokenizer, prompt, num_candidates, seed, mode)
        return run_steps(self.best_of_n.steps(request), self.run_engine)

    def run_engine(self, engine: str, **inputs: np.ndarray) -> Tensors:
        """One engine on the inputs it declares, cast to the graph's dtypes (as the BLS runner does)."""
        feed = {
            name: np.ascontiguousarray(inputs[name], dtype=dtype)
            for name, dtype in self.input_dtypes[engine].items()
        }
        return self.engines[engine].run_batched([feed])[0]
