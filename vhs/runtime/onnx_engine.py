"""One ONNX graph run by ONNX Runtime inside a Triton Python-backend model (the CPU engine backend).

Triton's dynamic batcher hands `execute` several requests at once; they are concatenated along the
batch axis, run in one session call, and split back, so candidates of concurrent requests share one
graph execution. A single request's arrays go to the session as they are (no concatenation copy).
Kept free of `triton_python_backend_utils` so it is unit-tested without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

ONNX_MODEL_FILE = "model.onnx"


def onnx_model_file(path: str | Path) -> Path:
    """The graph file of `path`: the file itself, or `path/model.onnx` for Triton's directory form
    (a graph with external data: the folder holds `model.onnx` and its weight files)."""
    path = Path(path)
    return path / ONNX_MODEL_FILE if path.is_dir() else path


class OnnxEngine:
    """An ONNX Runtime session with batched execution over several requests.

    on_compute: called with the seconds each `session.run` took (the graph's own compute, without
    the batching around it); the engine model adds them to its metric.
    """

    def __init__(
        self,
        model_path: str,
        output_names: Sequence[str],
        intra_op_num_threads: int = 1,
        on_compute: Callable[[float], None] | None = None,
    ):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_model_file(model_path)), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = list(output_names)
        self.on_compute = on_compute
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if missing := [name for name in self.output_names if name not in graph_outputs]:
            raise ValueError(
                f"{model_path} has no output {missing} (its outputs: {graph_outputs}): the graph is not "
                "the one this model serves"
            )

    def check_inputs(self, declared: Sequence[str]) -> None:
        """Raise ValueError unless the graph's inputs are exactly `declared` (the model config's): a
        graph swapped for another must fail the load, not every request (or Triton's warm-up)."""
        if sorted(declared) != sorted(self.input_names):
            raise ValueError(
                f"the graph's inputs are {self.input_names}, the model config declares {list(declared)}: "
                "the graph is not the one this model serves"
            )

    def run_batched(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Run every request's inputs (each with its own batch axis) in one session call.

        Returns one {output name: array} per request, in order, holding that request's rows only.
        """
        if len(requests) == 1:
            return [dict(zip(self.output_names, self._run(requests[0]), strict=True))]
        sizes = [len(request[self.input_names[0]]) for request in requests]
        outputs = self._run(
            {name: np.concatenate([request[name] for request in requests]) for name in self.input_names}
        )
        boundaries = np.cumsum(sizes)[:-1]
        per_output = [np.split(output, boundaries) for output in outputs]
        return [
            {name: parts[index] for name, parts in zip(self.output_names, per_output, strict=True)}
            for index in range(len(requests))
        ]

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        outputs = self.session.run(self.output_names, feed)
        if self.on_compute is not None:
            self.on_compute(time.perf_counter() - start)
        return outputs
