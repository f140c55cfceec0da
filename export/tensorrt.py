"""TensorRT plans from the cleaned ONNX graphs, built with polygraphy's TensorRT loaders (GPU hosts).

TensorRT cannot be installed on machines without NVIDIA's package index (its PyPI package is a stub
that downloads the real wheel), so the build itself is import-guarded; everything that decides what
is built -- precision per engine, the fp32 layers of an fp16 build, optimisation profiles from the
real batch sizes, timing cache, builder optimisation level -- is plain data made and tested anywhere.

Precision per engine:
- `vae_decoder` is always fp32, as NVIDIA's own diffusion demo keeps the VAE;
- elsewhere `--precision fp16|bf16` builds with *obeyed* precision constraints, and the layers whose
  numbers do not survive fp16 stay fp32: the nodes holding constants fp16 cannot represent (Sana's
  `+ 1e-15` epsilons round to 0 and 0/0 gives NaN) with the node that consumes them, and the
  mean-of-squares statistics of the RMS norms (a sum over thousands of channels overflows fp16).

Every plan is compared with ONNX Runtime on the exporter's example inputs before it is written to
the repository (`check_plan_accuracy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from vhs.engine_names import TEXT_ENCODER, VAE_DECODER
from vhs.modes import DEFAULT_MODE, MODES

PRECISIONS = ("fp32", "fp16", "bf16")
FP32_ENGINES = (VAE_DECODER,)
# In the default mode (vhs) the prompt is encoded once and only the winner finishes, the others run
# once per candidate: the optimisation profile is tuned for the batch each engine really sees.
ONCE_PER_REQUEST = (TEXT_ENCODER, *MODES[DEFAULT_MODE].stages_for_the_winner)
FP16_SMALLEST_NORMAL = 2.0**-14  # below this fp16 flushes or loses all precision
FP16_LARGEST = 65504.0
FP32_STATISTICS_OPS = ("ReduceMean", "Pow")
SMALL_CONSTANT_SIZE = 16
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
            f"--trt needs TensorRT on a GPU host ({type(error).__name__}: {error}); use the serving "
            "image (deploy/Dockerfile: `make repo-gpu` inside it) or install the TensorRT of your Triton "
            "release from NVIDIA's index (pip install --extra-index-url https://pypi.nvidia.com "
            "tensorrt-cu12==10.5.0)"
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


def engine_precision(engine: str, requested: str) -> str:
    """The precision `engine` is built in when `requested` is asked for (the VAE stays fp32)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return "fp32" if engine in FP32_ENGINES else requested


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


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes an fp16 build must keep in fp32 (see the module docstring), in graph order."""
    # Small constants only (weights may live in external data, which is not loaded here).
    constants = {
        i.name: onnx.numpy_helper.to_array(i)
        for i in model.graph.initializer
        if int(np.prod(i.dims)) <= SMALL_CONSTANT_SIZE and i.data_location != onnx.TensorProto.EXTERNAL
    }
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    unrepresentable = {name for name, value in constants.items() if _outside_fp16(value)}
    keep = set()
    for node in model.graph.node:
        if node.op_type in FP32_STATISTICS_OPS or unrepresentable & set(node.input):
            keep.add(node.name)
    # The consumer of an fp32 epsilon sum must read it in fp32 too, or it rounds to 0 on the way in.
    epsilon_outputs = {
        output
        for node in model.graph.node
        if unrepresentable & set(node.input) and node.op_type not in FP32_STATISTICS_OPS
        for output in node.output
    }
    keep |= {node.name for node in model.graph.node if epsilon_outputs & set(node.input)}
    return [node.name for node in model.graph.node if node.name in keep]


def _outside_fp16(value: np.ndarray) -> bool:
    """A small float constant (an epsilon, a mask fill) that fp16 cannot hold. Weight tensors always
    hold some tiny values; TensorRT rounds those, which costs precision, not correctness."""
    if not np.issubdtype(value.dtype, np.floating) or not 0 < value.size <= SMALL_CONSTANT_SIZE:
        return False
    magnitude = np.abs(value.astype(np.float64))
    nonzero = magnitude[magnitude > 0]
    return bool(nonzero.size and (nonzero.min() < FP16_SMALLEST_NORMAL or nonzero.max() > FP16_LARGEST))


def plan_recipe(
    engine: str,
    onnx_path: Path,
    profile: dict,
    requested_precision: str,
    timing_cache: Path,
    builder_optimization_level: int = DEFAULT_BUILDER_OPTIMIZATION_LEVEL,
) -> PlanRecipe:
    """The recipe of one engine's plan."""
    precision = engine_precision(engine, requested_precision)
    keep = (
        () if precision == "fp32" else tuple(fp32_nodes(onnx.load(str(onnx_path), load_external_data=False)))
    )
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
