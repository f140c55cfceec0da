"""TensorRT plans from the ONNX graphs, with polygraphy's `convert` (GPU hosts only).

TensorRT cannot be installed on machines without NVIDIA's package index (its PyPI package is a stub
that downloads the real wheel), so everything here is import-guarded: the optimisation profiles and
command lines are built and tested anywhere; the build itself needs `tensorrt` and a GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "bf16")


class TensorRTUnavailable(RuntimeError):
    """`--trt` was asked for on a machine where TensorRT cannot be imported."""


def require_tensorrt() -> None:
    """Raise TensorRTUnavailable with what to install, unless `import tensorrt` works."""
    try:
        import tensorrt  # noqa: F401
    except Exception as error:  # the PyPI stub fails with OSError/ImportError on missing libraries
        raise TensorRTUnavailable(
            f"--trt needs TensorRT on a GPU host ({type(error).__name__}: {error}); install it with "
            "'pip install --extra-index-url https://pypi.nvidia.com tensorrt' or use the NGC Triton container"
        ) from None


def optimization_profile(inputs: list[dict], max_batch_size: int, dynamic_dims: dict[str, dict[int, tuple]]):
    """min/opt/max shapes per input: batch 1 / max / max; other dynamic axes from `dynamic_dims`.

    inputs: the manifest's input list (shapes include the batch axis, -1 where dynamic).
    dynamic_dims: {input name: {axis: (min, opt, max)}} for dynamic axes other than the batch.
    Returns {"min"|"opt"|"max": {input name: [dims]}}.
    """
    profile = {"min": {}, "opt": {}, "max": {}}
    for tensor in inputs:
        for level, batch in (("min", 1), ("opt", max_batch_size), ("max", max_batch_size)):
            dims = [batch, *tensor["shape"][1:]]
            for axis, bounds in dynamic_dims.get(tensor["name"], {}).items():
                dims[axis] = bounds[("min", "opt", "max").index(level)]
            if -1 in dims:
                raise ValueError(
                    f"input '{tensor['name']}' has a dynamic axis without bounds: {tensor['shape']}"
                )
            profile[level][tensor["name"]] = dims
    return profile


def convert_command(onnx_path: Path, plan_path: Path, profile: dict, precision: str) -> list[str]:
    """The `polygraphy convert` command line that builds one plan."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    polygraphy = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    command = [polygraphy, "convert", str(onnx_path), "--convert-to", "trt", "-o", str(plan_path)]
    for level in ("min", "opt", "max"):
        shapes = [f"{name}:[{','.join(str(d) for d in dims)}]" for name, dims in profile[level].items()]
        command += [f"--trt-{level}-shapes", *shapes]
    if precision != "fp32":
        command.append(f"--{precision}")
    return command


def build_plan(onnx_path: Path, plan_path: Path, profile: dict, precision: str) -> None:
    """Build one plan; raises RuntimeError with polygraphy's output on failure."""
    require_tensorrt()
    completed = subprocess.run(
        convert_command(onnx_path, plan_path, profile, precision), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"TensorRT build of {onnx_path.name} failed:\n{completed.stdout[-3000:]}{completed.stderr}"
        )
