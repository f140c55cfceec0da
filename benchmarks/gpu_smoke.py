"""`make gpu-smoke`: what the first GPU host proves in minutes, from pip packages alone (no NGC
container, no network), as one table.

1. reference   the reference pipeline on CUDA under the precision policy (weight GEMMs in fp16 by
               torch autocast, the text encoder and the VAE in fp32) against fp32 on the CPU: the
               same winner for every prompt, scores and images within bounds.
2. served      where a GPU tritonserver with its ONNX Runtime backend is on this host (an NGC
               container): tiny-random exported for `onnxruntime_gpu` in fp16 and served -- engine
               outputs in device memory, handed on through DLPack / CUDA IPC, the winner's rows
               gathered on the device -- against the CPU server, from concurrent clients.
3. tensorrt    where TensorRT imports: tiny-random's plans in fp16, each checked by the exporter
               against ONNX Runtime (`vhs-export --backend tensorrt_plan`).

A check whose requirement is missing is skipped with the reason; on a machine without a GPU every
check is skipped and the exit status is 0 with "nothing was run on a GPU". A failed check exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROMPTS = (
    "a photo of a red circle left of a blue square",
    "a photo of three yellow diamonds",
    "a photo of a purple cross left of an orange ring",
)
NUM_CANDIDATES, SEED, MODE = 4, 7, "vhs"
# CUDA in the policy against fp32 on the CPU (fp16 keeps ~3 decimal digits per operation).
SCORE_ATOL = 2e-2
IMAGE_MAX_LEVELS = 8  # of 255, on any pixel
IMAGE_MEAN_LEVELS = 1.0
CLIENTS = 4


@dataclass
class Environment:
    """What this host offers."""

    cuda_device: str | None  # the GPU's name, None without a usable CUDA device
    gpu_tritonserver: bool  # an NGC tritonserver with its onnxruntime backend
    tensorrt: str | None  # TensorRT's version where it imports
    reasons: dict[str, str] = field(default_factory=dict)  # why each missing piece is missing


@dataclass
class Row:
    check: str
    status: str  # passed | failed | skipped
    detail: str
    seconds: float = 0.0


def detect() -> Environment:
    """The host's CUDA device, GPU tritonserver and TensorRT (nothing is started)."""
    reasons = {}
    cuda_device = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda_device = torch.cuda.get_device_name(0)
        else:
            reasons["cuda"] = f"torch {torch.__version__} sees no CUDA device"
    except ImportError as error:
        reasons["cuda"] = f"torch does not import ({error})"
    server = shutil.which("tritonserver")
    backends = Path("/opt/tritonserver/backends")
    gpu_tritonserver = bool(server and (backends / "onnxruntime").is_dir() and cuda_device)
    if not gpu_tritonserver:
        reasons["tritonserver"] = (
            "no tritonserver with its onnxruntime backend on this host (the pip one, nvidia-pytriton, has "
            "the Python backend only: run inside nvcr.io/nvidia/tritonserver:25.11-py3)"
            if cuda_device
            else "no CUDA device"
        )
    tensorrt = None
    try:
        import tensorrt as trt

        tensorrt = trt.__version__
    except Exception as error:  # the PyPI stub raises on import without NVIDIA's wheel
        reasons["tensorrt"] = f"TensorRT does not import ({type(error).__name__})"
    return Environment(cuda_device, gpu_tritonserver, tensorrt, reasons)


def compare_results(reference: Sequence, candidate: Sequence) -> tuple[bool, str]:
    """Best-of-N outputs of the same requests: the same winner each time, scores within
    SCORE_ATOL, images within IMAGE_MAX_LEVELS (any pixel) and IMAGE_MEAN_LEVELS (mean)."""
    winners = sum(a.selected == b.selected for a, b in zip(reference, candidate, strict=True))
    score_error = max(
        float(np.abs(np.asarray(a.scores) - np.asarray(b.scores)).max())
        for a, b in zip(reference, candidate, strict=True)
    )
    levels = [
        np.abs(a.image.astype(int) - b.image.astype(int)) for a, b in zip(reference, candidate, strict=True)
    ]
    max_levels, mean_levels = max(int(x.max()) for x in levels), max(float(x.mean()) for x in levels)
    passed = (
        winners == len(reference)
        and score_error <= SCORE_ATOL
        and max_levels <= IMAGE_MAX_LEVELS
        and mean_levels <= IMAGE_MEAN_LEVELS
    )
    detail = (
        f"same winner {winners}/{len(reference)}, max |score diff| {score_error:.2e}, image max "
        f"{max_levels} / mean {mean_levels:.2f} levels"
    )
    return passed, detail


def built(preset_name: str) -> str:
    """The preset, built first where it is made in code (loading never builds one)."""
    from vhs.presets.build import CODE_PRESETS, build

    if preset_name in CODE_PRESETS:
        build(preset_name)
    return preset_name


def reference_on_cuda(preset_name: str) -> tuple[bool, str]:
    """Check 1: the reference pipeline on CUDA in the policy vs fp32 on the CPU."""
    import torch

    from vhs.export.precision import engine_precision
    from vhs.pipeline import VHSPipeline
    from vhs.presets import load_preset

    cpu = VHSPipeline(load_preset(built(preset_name)))
    expected = [cpu(prompt, NUM_CANDIDATES, SEED, MODE) for prompt in PROMPTS]
    gpu = VHSPipeline(load_preset(preset_name))
    for engine in gpu.engines.values():
        engine.module.to("cuda")

    @torch.no_grad()
    def run_engine(name, **inputs):
        tensors = {
            key: (torch.from_numpy(value) if isinstance(value, np.ndarray) else value).to("cuda")
            for key, value in inputs.items()
        }
        reduced = engine_precision(name, "fp16") == "fp16"
        with torch.autocast("cuda", dtype=torch.float16, enabled=reduced):
            outputs = gpu.engines[name](**tensors)
        return {key: value.float() if value.is_floating_point() else value for key, value in outputs.items()}

    gpu.run_engine = run_engine
    actual = [gpu(prompt, NUM_CANDIDATES, SEED, MODE) for prompt in PROMPTS]
    return compare_results(expected, actual)


def served_on_gpu(build: Path) -> tuple[bool, str]:
    """Check 2: tiny-random on the GPU server (onnxruntime_gpu, fp16) vs the CPU server, concurrently."""
    from vhs.client.vhs_client import VHSClient
    from vhs.export.cli import main as export_main
    from vhs.launcher.server import TritonServer

    results = {}
    built("tiny-random")
    for backend, precision in (("python", "fp32"), ("onnxruntime_gpu", "fp16")):
        output = build / f"tiny-random-{backend}"
        argv = ["--preset", "tiny-random", "--output", str(output), "--backend", backend]
        if export_main([*argv, "--precision", precision]) != 0:
            return False, f"the {backend} export failed"
        with TritonServer(output / "model_repository", build_dir=build / "triton") as server:

            def generate(prompt, url=server.grpc_url):
                with VHSClient(url) as client:
                    return client.generate(prompt, NUM_CANDIDATES, SEED, MODE)

            with ThreadPoolExecutor(CLIENTS) as pool:
                results[backend] = list(pool.map(generate, PROMPTS * CLIENTS))
    return compare_results(results["python"], results["onnxruntime_gpu"])


def tensorrt_plans(build: Path) -> tuple[bool, str]:
    """Check 3: tiny-random's fp16 plans, each compared with ONNX Runtime by the exporter."""
    import json

    from vhs.export.cli import main as export_main

    built("tiny-random")
    output = build / "tiny-random-tensorrt"
    argv = ["--preset", "tiny-random", "--output", str(output), "--backend", "tensorrt_plan"]
    if export_main([*argv, "--precision", "fp16"]) != 0:
        return False, "vhs-export --backend tensorrt_plan failed (its message is above)"
    manifest = json.loads((output / "manifest.json").read_text())
    version = manifest.get("tensorrt_version")
    return (
        True,
        f"{len(manifest['engines'])} plans (TensorRT {version}), each within ONNX Runtime's tolerance",
    )


CHECKS: dict[str, tuple[Callable[[Environment], str | None], Callable]] = {
    # name: (requirement -> the reason it is missing or None, the check)
    "reference": (lambda env: None if env.cuda_device else env.reasons.get("cuda"), reference_on_cuda),
    "served": (lambda env: None if env.gpu_tritonserver else env.reasons.get("tritonserver"), served_on_gpu),
    "tensorrt": (
        lambda env: env.reasons.get("cuda") or (None if env.tensorrt else env.reasons.get("tensorrt")),
        tensorrt_plans,
    ),
}


def run_checks(env: Environment, runners: dict[str, Callable[[], tuple[bool, str]]]) -> list[Row]:
    """Each check in order: skipped with its reason when its requirement is missing, else run (an
    exception is a failure with its message)."""
    rows = []
    for name, (missing, _) in CHECKS.items():
        reason = missing(env)
        if reason:
            rows.append(Row(name, "skipped", reason))
            continue
        start = time.perf_counter()
        try:
            passed, detail = runners[name]()
        except Exception as error:  # a check that crashes has failed, with the reason shown
            passed, detail = False, f"{type(error).__name__}: {error}"
        rows.append(Row(name, "passed" if passed else "failed", detail, time.perf_counter() - start))
    return rows


def format_rows(env: Environment, rows: Sequence[Row]) -> str:
    width = max(len(row.check) for row in rows)
    lines = [
        f"GPU smoke on {env.cuda_device or 'a host without a CUDA device'}"
        f" (TensorRT {env.tensorrt or '-'}, GPU tritonserver {'yes' if env.gpu_tritonserver else 'no'})",
        f"{'check':<{width}}  {'status':<8}{'s':>7}  detail",
    ]
    lines += [f"{row.check:<{width}}  {row.status:<8}{row.seconds:>7.1f}  {row.detail}" for row in rows]
    ran = [row for row in rows if row.status != "skipped"]
    if not ran:
        lines.append("nothing was run on a GPU: every check was skipped (reasons above)")
    return "\n".join(lines)


def exit_status(rows: Sequence[Row]) -> int:
    return 1 if any(row.status == "failed" for row in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-random", help="the reference check's preset")
    parser.add_argument("--build", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    env = detect()
    with contextlib.ExitStack() as stack:
        build = args.build or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-smoke-")))
        runners = {
            "reference": lambda: reference_on_cuda(args.preset),
            "served": lambda: served_on_gpu(build),
            "tensorrt": lambda: tensorrt_plans(build),
        }
        rows = run_checks(env, runners)
    print(format_rows(env, rows))
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
