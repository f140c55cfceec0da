"""TensorRT plans from the cleaned ONNX graphs, built with polygraphy's TensorRT loaders (GPU hosts).

TensorRT cannot be installed on machines without NVIDIA's package index (its PyPI package is a stub
that downloads the real wheel), so the build itself is import-guarded; everything that decides what
is built -- precision per engine, the fp32 layers of an fp16 build, optimisation profiles from the
real batch sizes, timing cache, builder optimisation level -- is plain data made and tested anywhere.

Precision per engine and per node: the policy of `export/precision.py` -- the VAE fp32, the text
encoder fp32 for fp16 (bf16 for bf16), elsewhere the weight GEMMs in the requested precision and
every other layer pinned to fp32 (*obeyed* precision constraints): linear-attention products and
sums, softmax, norms, residual adds, epsilons, and the weight GEMMs the example inputs bring near
fp16's range.

Every plan is compared with ONNX Runtime on the exporter's example inputs before it is written to
the repository (`check_plan_accuracy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from vhs.engine_names import TEXT_ENCODER
from vhs.modes import DEFAULT_MODE, MODES

from .precision import PRECISIONS, engine_precision  # noqa: F401  (PRECISIONS: the command line's choices)
from .precision import fp32_nodes as policy_fp32_nodes

# In the default mode (vhs) the prompt is encoded once and only the winner finishes, the others run
# once per candidate: the optimisation profile is tuned for the batch each engine really sees.
ONCE_PER_REQUEST = (TEXT_ENCODER, *MODES[DEFAULT_MODE].stages_for_the_winner)
ONNX_LAYER_METADATA = "[ONNX Layer: "
DEFAULT_BUILDER_OPTIMIZATION_LEVEL = 3  # TensorRT's own default; 5 searches longest
# Plan vs ONNX Runtime on the example inputs (max |error| <= atol + rtol * |expected|).
PLAN_TOLERANCES = {"fp32": (1e-3, 1e-3), "fp16": (5e-2, 5e-2), "bf16": (1e-1, 1e-1)}


class TensorRTUnavailable(RuntimeError):
    """`--trt` was asked for on a machine where TensorRT cannot be imported."""


def require_tensorrt() -> str:
    """TensorRT's version; raises TensorRTUnavailable with what to install if it cannot be imported."""
    try:
        import tensorrt
    except Exception as error:  # the PyPI stub fails with OSError/ImportError on missing libraries
        raise TensorRTUnavailable(
            f"--trt needs TensorRT on a GPU host ({type(error).__name__}: {error}); use the export "
            "image (deploy/Dockerfile.export: NGC TensorRT 25.11, the TensorRT of the serving image's "
            "Triton 25.11) or install that TensorRT from NVIDIA's index (pip install --extra-index-url "
            "https://pypi.nvidia.com tensorrt-cu13==10.14.1.48)"
        ) from None
    return tensorrt.__version__


@dataclass(frozen=True)
class PlanRecipe:
    """Everything that decides one plan, as data: what `build_plan` hands to polygraphy."""

    engine: str
    precision: str  # fp32 | fp16 | bf16, after the per-engine rule
    profile: dict  # {"min"|"opt"|"max": {input name: [dims]}}
    fp32_nodes: tuple[str, ...]  # ONNX node names whose layers stay fp32 (empty for fp32 plans)
    timing_cache: Path
    builder_optimization_level: int


def opt_batch(engine: str, default_candidates: int) -> int:
    """The batch TensorRT tunes `engine` for: 1 where it runs once per request, else N."""
    return 1 if engine in ONCE_PER_REQUEST else default_candidates


def optimization_profile(
    inputs: list[dict], opt_batch_size: int, max_batch_size: int, dynamic_dims: dict[str, dict[int, tuple]]
) -> dict:
    """min/opt/max shapes per input: batch 1 / `opt_batch_size` / max; other dynamic axes from `dynamic_dims`.

    inputs: the manifest's input list (shapes include the batch axis, -1 where dynamic).
    dynamic_dims: {input name: {axis: (min, opt, max)}} for dynamic axes other than the batch.
    Returns {"min"|"opt"|"max": {input name: [dims]}}.
    """
    if not 1 <= opt_batch_size <= max_batch_size:
        raise ValueError(f"opt batch must be in [1, {max_batch_size}], got {opt_batch_size}")
    profile = {"min": {}, "opt": {}, "max": {}}
    for tensor in inputs:
        for level, batch in (("min", 1), ("opt", opt_batch_size), ("max", max_batch_size)):
            dims = [batch, *tensor["shape"][1:]]
            for axis, bounds in dynamic_dims.get(tensor["name"], {}).items():
                dims[axis] = bounds[("min", "opt", "max").index(level)]
            if -1 in dims:
                raise ValueError(
                    f"input '{tensor['name']}' has a dynamic axis without bounds: {tensor['shape']}"
                )
            profile[level][tensor["name"]] = dims
    return profile


def fp32_nodes(model: onnx.ModelProto, ranges: dict[str, float] | None = None, precision: str = "fp16"):
    """The ONNX nodes a reduced-precision plan pins to fp32 (export/precision.py's policy)."""
    return policy_fp32_nodes(model, ranges, precision)


def plan_recipe(
    engine: str,
    onnx_path: Path,
    profile: dict,
    requested_precision: str,
    timing_cache: Path,
    builder_optimization_level: int = DEFAULT_BUILDER_OPTIMIZATION_LEVEL,
    ranges: dict[str, float] | None = None,
) -> PlanRecipe:
    """The recipe of one engine's plan; `ranges`: the graph's activation ranges on the example inputs
    (`precision.activation_ranges`), which keep the weight GEMMs near fp16's range in fp32."""
    precision = engine_precision(engine, requested_precision)
    keep = ()
    if precision != "fp32":
        model = onnx.load(str(onnx_path), load_external_data=False)
        keep = tuple(fp32_nodes(model, ranges, precision))
    return PlanRecipe(engine, precision, profile, keep, timing_cache, builder_optimization_level)


def polygraphy_loaders(onnx_path: Path, recipe: PlanRecipe):
    """polygraphy's lazy TensorRT loaders for `recipe` (nothing is built or imported until called)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
    from polygraphy.backend.trt import PostprocessNetwork as Postprocess

    profile = Profile()
    for name, dims in recipe.profile["min"].items():
        profile.add(name, dims, recipe.profile["opt"][name], recipe.profile["max"][name])
    network = NetworkFromOnnxPath(str(onnx_path))
    if recipe.fp32_nodes:
        network = Postprocess(network, func=lambda network: keep_layers_fp32(network, recipe.fp32_nodes))
    config = CreateConfig(
        fp16=recipe.precision == "fp16",
        bf16=recipe.precision == "bf16",
        precision_constraints="obey" if recipe.fp32_nodes else None,
        profiles=[profile],
        load_timing_cache=str(recipe.timing_cache),
        builder_optimization_level=recipe.builder_optimization_level,
    )
    return EngineBytesFromNetwork(network, config=config, save_timing_cache=str(recipe.timing_cache))


def keep_layers_fp32(network, node_names: Iterable[str]):
    """Pin every TensorRT layer made from one of `node_names` (ONNX) to fp32 compute and outputs."""
    import tensorrt as trt

    for layer in layers_of_nodes(network, node_names):
        layer.precision = trt.float32
        for index in range(layer.num_outputs):
            if layer.get_output(index).dtype in (trt.float16, trt.bfloat16, trt.float32):
                layer.set_output_type(index, trt.float32)
    return network


def layers_of_nodes(network, node_names: Iterable[str]) -> list:
    """The layers of `network` made from the ONNX nodes `node_names`.

    A node can become several layers: TensorRT 10's ONNX parser records the node in each layer's
    metadata (`[ONNX Layer: name]`), which is matched; a layer without metadata matches by its name.
    """
    names = set(node_names)
    return [layer for layer in network if _onnx_node_of(layer) in names]


def _onnx_node_of(layer) -> str:
    metadata = getattr(layer, "metadata", "") or ""
    if metadata.startswith(ONNX_LAYER_METADATA) and metadata.endswith("]"):
        return metadata[len(ONNX_LAYER_METADATA) : -1]
    return layer.name


def build_plan(onnx_path: Path, plan_path: Path, recipe: PlanRecipe) -> None:
    """Build one plan with polygraphy and write it to `plan_path`; the timing cache is updated."""
    require_tensorrt()
    from polygraphy.backend.common import SaveBytes

    recipe.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    SaveBytes(polygraphy_loaders(onnx_path, recipe), str(plan_path))()


@dataclass(frozen=True)
class PlanAccuracy:
    batch: int
    max_abs_error: float
    passed: bool  # within the precision's tolerance and free of NaN/Inf


def compare_with_onnxruntime(
    onnx_path: Path, candidate_runner, feed: dict[str, np.ndarray], precision: str, batch: int
) -> PlanAccuracy:
    """Run `feed` through ONNX Runtime and `candidate_runner` (a polygraphy runner) and compare.

    Tolerances come from PLAN_TOLERANCES[precision]; NaN/Inf in either fails.
    """
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc

    atol, rtol = PLAN_TOLERANCES[precision]
    with OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"])) as reference:
        expected = reference.infer(feed)
    with candidate_runner as runner:
        actual = {name: np.asarray(value) for name, value in runner.infer(feed).items()}
    results = RunResults()
    results.append(("onnxrt", [IterationResult(dict(expected), runner_name="onnxrt")]))
    results.append(("plan", [IterationResult(actual, runner_name="plan")]))
    accurate = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=rtol))
    finite = Comparator.validate(results, check_inf=True, check_nan=True)
    error = max(float(np.max(np.abs(actual[name] - expected[name]))) for name in expected)
    return PlanAccuracy(batch, error, bool(accurate) and bool(finite))


def check_plan_accuracy(
    onnx_path: Path, plan_path: Path, feeds: dict[int, dict[str, np.ndarray]], precision: str
) -> list[PlanAccuracy]:
    """The plan at `plan_path` against ONNX Runtime on each {batch: feed} (GPU hosts only)."""
    require_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    engine = EngineFromBytes(BytesFromPath(str(plan_path)))
    return [
        compare_with_onnxruntime(onnx_path, TrtRunner(engine), feed, precision, batch)
        for batch, feed in feeds.items()
    ]
