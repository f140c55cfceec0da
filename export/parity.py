"""Parity of an exported graph with PyTorch eager, checked with polygraphy.

ONNX Runtime runs the graph through polygraphy's `OnnxrtRunner`; PyTorch's outputs are wrapped as a
second run; `Comparator.compare_accuracy` with `CompareFunc.simple` decides, `Comparator.validate`
rejects NaN/Inf (the silent-NaN export pitfall).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from vhs.engines import Engine
from vhs.runtime.onnx_engine import onnx_model_file

# Float32 graphs on CPU: differences come from operator fusion and summation order only.
ATOL = 1e-4
RTOL = 1e-3

G_LOGGER.module_severity = G_LOGGER.ERROR  # per-output statistics would bury the summary


@dataclass
class ParityResult:
    batch: int
    max_abs_error: float
    passed: bool  # within ATOL/RTOL and free of NaN/Inf


def check_parity(engine: Engine, inputs: dict[str, torch.Tensor], path: Path, batch: int) -> ParityResult:
    """Run `engine` and the graph at `path` on the first `batch` rows of `inputs` (repeated as needed)."""
    rows = [i % next(iter(inputs.values())).shape[0] for i in range(batch)]
    feed = {name: inputs[name][rows].numpy() for name in engine.input_names}
    with torch.no_grad():
        outputs = engine(**{name: torch.from_numpy(array) for name, array in feed.items()})
    # polygraphy compares C-contiguous arrays only (the VAE's output is channels-last in memory).
    expected = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in outputs.items()}
    session = SessionFromOnnx(str(onnx_model_file(path)), providers=["CPUExecutionProvider"])
    with OnnxrtRunner(session) as runner:
        actual = {name: np.ascontiguousarray(array) for name, array in runner.infer(feed).items()}
    run_results = RunResults()
    run_results.append(("pytorch", [IterationResult(expected, runner_name="pytorch")]))
    run_results.append(("onnxrt", [IterationResult(actual, runner_name="onnxrt")]))
    accurate = Comparator.compare_accuracy(run_results, compare_func=SimpleCompareFunc(atol=ATOL, rtol=RTOL))
    finite = Comparator.validate(run_results, check_inf=True, check_nan=True)
    error = max(float(np.max(np.abs(actual[name] - expected[name]))) for name in engine.output_names)
    return ParityResult(batch, error, bool(accurate) and bool(finite))


def inspect_model(path: Path) -> str:
    """`polygraphy inspect model` of a graph (inputs, outputs, node count), for the export report."""
    command = [
        str(Path(sys.executable).parent / "polygraphy"),
        "inspect",
        "model",
        str(onnx_model_file(path)),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    text = completed.stdout if completed.returncode == 0 else completed.stderr
    lines = text.splitlines()
    return "\n".join(lines[:40] + ([f"... ({len(lines) - 40} more lines)"] if len(lines) > 40 else []))
