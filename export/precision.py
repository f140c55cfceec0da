"""The precision policy for real weights, and the check that a graph stays finite under it.

fp16 holds values up to 65504. The published models exceed that where values are *summed*: Sana's
ReLU linear attention adds `relu(k) v` over all 1024 tokens and then over 32 channels (diffusers runs
it in fp32 and clips its fp16 output to +-65504), the residual stream accumulates 20 blocks of
updates, norms sum squares over thousands of channels, and Gemma-family text encoders overflow fp16
outright (they are run in bf16). So reduced precision is kept to where the FLOPs are:

- **weight GEMMs** (`MatMul`, `Gemm`, `Conv`, `ConvTranspose` with one constant operand: the
  projections, the MLPs, the 1x1 / depthwise convolutions) run in the engine's reduced precision
  (fp16 or bf16), reading and writing it;
- **every other float node stays fp32**: the activation x activation products (linear attention's
  `V K^T` and `scores Q`, softmax attention's `Q K^T` and `P V`), their sums, epsilons and divisions,
  softmax, norms and their statistics, residual adds, modulations, activations, the CLIP
  preprocessing's rounding;
- per engine (`engine_precision`): the VAE decoder is fp32 (as NVIDIA's diffusion demos keep the
  VAE), the text encoder is fp32 when fp16 is asked and bf16 when bf16 is asked (bf16 has fp32's
  range), every other engine takes the requested precision under the node rule above.

In the DiT the weight GEMMs are ~98 % of the FLOPs (per block at 1024 tokens, width 2240: ~160
GFLOP of projections and FFN convolutions against ~3 GFLOP of attention products), so the policy
keeps nearly all of fp16's speed.

The check (`emulate`, `check_policy`): a float32 graph that computes what the mixed-precision engine
computes -- every node outside the fp32 set has its float inputs and outputs rounded to the reduced
type (`Cast` there and back; beyond 65504 that is inf, as on the GPU) -- is run by ONNX Runtime on
the CPU next to the fp32 graph. The exporter runs it on the example inputs of the preset's own
weights (the example chain runs the real upstream engines, so the magnitudes are the real ones) before
anything is built for a GPU; `tests/test_precision_policy.py` runs it on tiny weights scaled to the
published models' magnitudes.

Both GPU backends apply the same node set: TensorRT pins the fp32 layers (`export/tensorrt.py`);
`onnxruntime_gpu` serves the graph with the casts written in (`mixed_precision_graph`), run as typed by
ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from vhs.engine_names import TEXT_ENCODER, VAE_DECODER

PRECISIONS = ("fp32", "fp16", "bf16")
REDUCED = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
GEMM_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
# Ops that only move or reshape constants: a weight reached through them is still a weight.
ROUNDING_OPS = ("Floor", "Round", "Ceil")
CONSTANT_PRESERVING_OPS = ("Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Flatten")
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
FP16_LARGEST = 65504.0
# A weight GEMM stays fp32 when the example inputs bring it within this factor of fp16's largest
# value: other prompts and seeds must have room.
FP16_HEADROOM = 4.0
# The reduced-precision graph against fp32, on the same inputs, per output:
# max |error| <= atol + rtol * max |fp32| (fp16 keeps 11 significant bits, bf16 8).
EMULATION_TOLERANCES = {"fp16": (1e-2, 1e-2), "bf16": (5e-2, 5e-2)}


def engine_precision(engine: str, requested: str) -> str:
    """The precision `engine` runs in when `requested` is asked for (see the module docstring)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if engine == VAE_DECODER:
        return "fp32"
    if engine == TEXT_ENCODER and requested == "fp16":
        return "fp32"  # Gemma-family activations overflow fp16; bf16 keeps fp32's range
    return requested


def constant_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the tensors that hold weights: initializers, `Constant` outputs, and what the
    CONSTANT_PRESERVING_OPS make of them."""
    constants = {initializer.name for initializer in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" or (
            node.op_type in CONSTANT_PRESERVING_OPS and node.input and node.input[0] in constants
        ):
            constants.update(node.output)
    return constants


def reduced_nodes(model: onnx.ModelProto) -> list[str]:
    """The weight GEMMs: nodes of GEMM_OPS with one constant and one computed operand, in graph order,
    except those whose output is rounded to integers (the CLIP preprocessing's 8-bit resize: exact
    pixel arithmetic, not a layer)."""
    constants = constant_tensors(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def rounded(tensor: str, hops: int = 1) -> bool:
        for consumer in consumers.get(tensor, ()):
            if consumer.op_type in ROUNDING_OPS:
                return True
            if hops and consumer.op_type in ("Add", "Sub") and rounded(consumer.output[0], hops - 1):
                return True
        return False

    names = []
    for node in model.graph.node:
        if node.op_type in GEMM_OPS and len(node.input) >= 2:
            weighted = [name in constants for name in node.input[:2]]
            if weighted.count(True) == 1 and not rounded(node.output[0]):
                names.append(node.name)
    return names


def fp32_nodes(
    model: onnx.ModelProto, ranges: dict[str, float] | None = None, precision: str = "fp16"
) -> list[str]:
    """The nodes a reduced-precision engine keeps in fp32, in graph order: every node with a float
    output that is not a weight GEMM (integer and shape nodes are not listed: they have no precision),
    and, in fp16, every weight GEMM whose input or output reached more than 65504 / FP16_HEADROOM on
    the example inputs (`ranges`, from `activation_ranges`): e.g. Sana's cross-attention query reads
    the residual stream without a norm in front of it."""
    reduced = set(reduced_nodes(model))
    if ranges and precision == "fp16":
        reduced -= set(wide_gemms(model, ranges))
    types = float_tensors(model)
    return [
        node.name
        for node in model.graph.node
        if node.name not in reduced and node.op_type != "Constant" and any(o in types for o in node.output)
    ]


def wide_gemms(model: onnx.ModelProto, ranges: dict[str, float]) -> list[str]:
    """The weight GEMMs whose float input or output exceeded FP16_LARGEST / FP16_HEADROOM in `ranges`."""
    limit = FP16_LARGEST / FP16_HEADROOM
    wanted = set(reduced_nodes(model))
    return [
        node.name
        for node in model.graph.node
        if node.name in wanted and any(ranges.get(name, 0.0) > limit for name in [*node.input, *node.output])
    ]


def activation_ranges(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """max |value| of every float tensor of `model` (weights excluded) over `feeds`, in fp32."""
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(probe)
    weights = {initializer.name for initializer in probe.graph.initializer}
    outputs = {output.name for output in probe.graph.output}
    for value in inferred.graph.value_info:
        if value.name not in outputs and value.name not in weights:
            if value.type.tensor_type.elem_type in FLOAT_TYPES:
                probe.graph.output.append(value)
    ranges: dict[str, float] = {}
    for feed in feeds:
        values = {**feed, **run_graph(probe, feed)}  # the graph's inputs are read by its nodes too
        for name, value in values.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and value.size:
                finite = value[np.isfinite(value)]
                peak = float(np.abs(finite).max()) if finite.size else 0.0
                ranges[name] = max(ranges.get(name, 0.0), peak)
    return ranges


def float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float tensors of `model` (after shape inference), initializers included."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    names = set()
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type in FLOAT_TYPES:
            names.add(value.name)
    names.update(i.name for i in graph.initializer if i.data_type in FLOAT_TYPES)
    return names


def emulate(model: onnx.ModelProto, precision: str, fp32: Collection[str]) -> onnx.ModelProto:
    """A float32 copy of `model` that rounds like the mixed-precision engine: every node outside
    `fp32` (node names) reads its float inputs and writes its float outputs rounded to `precision`
    (Cast to fp16/bf16 and back: precision and range, a value beyond 65504 becoming inf in fp16).
    The graph's own inputs and outputs stay float32."""
    return _with_casts(model, precision, set(fp32), emulated=True)


def mixed_precision_graph(model: onnx.ModelProto, precision: str, fp32: Collection[str]) -> onnx.ModelProto:
    """The served graph of `model` in `precision`: every node outside `fp32` computes in the reduced
    type (its float inputs, weights included, cast to it; its outputs cast back to float32), every
    other node in float32. Inputs and outputs stay float32, so the orchestrator and the configs are
    the same as for an fp32 graph."""
    return _with_casts(model, precision, set(fp32), emulated=False)


def _with_casts(model: onnx.ModelProto, precision: str, fp32: set[str], emulated: bool) -> onnx.ModelProto:
    if precision not in REDUCED:
        raise ValueError(f"reduced precision must be one of {', '.join(REDUCED)}, got {precision!r}")
    low = REDUCED[precision]
    model = onnx.ModelProto.FromString(model.SerializeToString())
    floats = float_tensors(model)
    nodes = []
    rounded: dict[str, str] = {}  # tensor -> its reduced (or round-tripped) copy

    def reduced_copy(name: str) -> str:
        if name not in rounded:
            rounded[name] = f"{name}__{precision}"
            nodes.extend(_round_trip(name, rounded[name], low, emulated))
        return rounded[name]

    for node in model.graph.node:
        if node.name in fp32 or node.op_type == "Constant":
            nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            if name and name in floats:
                node.input[index] = reduced_copy(name)
        outputs = list(node.output)
        nodes.append(node)
        for index, name in enumerate(outputs):
            if name and name in floats:
                node.output[index] = f"{name}__{precision}_out"
                # In the emulation the node computes in fp32: round its output like the engine stores
                # it; in the served graph it already wrote the reduced type: cast it back.
                if emulated:
                    nodes.extend(_round_trip(node.output[index], name, low, emulated=True))
                else:
                    nodes.append(_cast(node.output[index], name, TensorProto.FLOAT))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]  # stale types of the renamed tensors
    return model


def _round_trip(source: str, target: str, low: int, emulated: bool) -> list[onnx.NodeProto]:
    if not emulated:
        return [_cast(source, target, low)]
    middle = f"{target}__low"
    return [_cast(source, middle, low), _cast(middle, target, TensorProto.FLOAT)]


def _cast(source: str, target: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [target], name=f"cast__{target}", to=to)


@dataclass(frozen=True)
class PolicyCheck:
    """A reduced-precision graph against its fp32 original on one feed."""

    precision: str
    finite: bool  # every output free of NaN/Inf
    max_abs_error: float  # against the fp32 outputs (inf when not finite)
    max_abs_reference: float  # the largest |fp32 output|
    passed: bool  # finite and within EMULATION_TOLERANCES

    def describe(self) -> str:
        state = "finite" if self.finite else "NaN/Inf"
        return (
            f"{self.precision}: {state}, max error {self.max_abs_error:.3g} "
            f"(|fp32| <= {self.max_abs_reference:.3g})"
        )


def run_graph(model: onnx.ModelProto | str | Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of `model` on `feed`, by ONNX Runtime on the CPU (graph optimisations off, so the
    casts of an emulation are run as written)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def check_policy(
    model: onnx.ModelProto,
    feed: dict[str, np.ndarray],
    precision: str,
    fp32: Iterable[str] | None = None,
    reference: dict[str, np.ndarray] | None = None,
) -> PolicyCheck:
    """Run `model` in fp32 and its emulation in `precision` (with `fp32` nodes kept fp32; default:
    the policy's `fp32_nodes`, calibrated on `feed`) on `feed` and compare. Float outputs only: the
    largest error of each output within atol + rtol x its largest |fp32| value."""
    keep = fp32_nodes(model, activation_ranges(model, [feed]), precision) if fp32 is None else list(fp32)
    expected = reference if reference is not None else run_graph(model, feed)
    actual = run_graph(emulate(model, precision, keep), feed)
    floating = [name for name, value in expected.items() if np.issubdtype(value.dtype, np.floating)]
    finite = all(np.isfinite(actual[name]).all() for name in floating)
    largest = max((float(np.abs(expected[name]).max()) for name in floating), default=0.0)
    if not finite:
        return PolicyCheck(precision, False, float("inf"), largest, False)
    atol, rtol = EMULATION_TOLERANCES[precision]
    error, within = 0.0, True
    for name in floating:
        difference = float(np.abs(actual[name].astype(np.float64) - expected[name]).max())
        error = max(error, difference)
        within &= difference <= atol + rtol * float(np.abs(expected[name]).max())
    return PolicyCheck(precision, True, error, largest, within)
