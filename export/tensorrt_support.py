"""TensorRT readiness of an ONNX graph, checked here without TensorRT: every node against a support
table written down in the repository (`tensorrt_support/tensorrt-<version>.json`).

What is checked, per graph:
- the opset is inside the parser's range;
- every node is in the default ONNX domain (no plugins are shipped) and its op is in the table and
  supported (sequence, optional and string ops are listed as unsupported, anything absent from the
  table is an error until someone checks TensorRT's docs and adds it);
- the element type of each node's first input is one of the op's types (after shape inference);
- inputs the parser needs as weights (`ReduceMean` axes, `Slice` axes, `TopK` K, ...) are
  initializers or `Constant` outputs;
- attributes with a restricted set of values (`Resize` modes, `TopK` sorted, ...) hold one of them;
- outputs the parser cannot produce (`LayerNormalization` Mean/InvStdDev) are unused;
- every tensor type in the graph is a TensorRT type (UINT8 only at the graph's inputs/outputs).

It runs in the exporter for every backend and in `make test` for every graph of every preset, so a
regression (a new op from a diffusers update, a cleanup step that stops folding) fails here rather
than at the first plan build on a GPU host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

SUPPORT_DIR = Path(__file__).resolve().parent / "tensorrt_support"
TENSORRT_VERSION = "10.14"  # the TensorRT of the pinned serving container (deploy/Dockerfile)


@dataclass(frozen=True)
class SupportTable:
    tensorrt_version: str
    container: str
    opset_min: int
    opset_max: int
    tensor_types: frozenset[str]
    io_only_types: frozenset[str]
    operators: dict[str, dict]


def load_support_table(version: str = TENSORRT_VERSION) -> SupportTable:
    """The checked-in support table of TensorRT `version` (e.g. "10.14")."""
    data = json.loads((SUPPORT_DIR / f"tensorrt-{version}.json").read_text())
    return SupportTable(
        tensorrt_version=data["tensorrt_version"],
        container=data["container"],
        opset_min=data["opset"]["min"],
        opset_max=data["opset"]["max"],
        tensor_types=frozenset(data["tensor_types"]),
        io_only_types=frozenset(data["io_only_types"]),
        operators=data["operators"],
    )


def check_tensorrt_readiness(model: onnx.ModelProto | str | Path, table: SupportTable) -> list[str]:
    """Every reason the TensorRT ONNX parser of `table` would reject `model`; [] when it is ready.

    Each problem names the node (name and op) and the rule it breaks.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not table.opset_min <= opset <= table.opset_max:
        problems.append(f"opset {opset} is outside TensorRT's [{table.opset_min}, {table.opset_max}]")

    weights = {initializer.name for initializer in graph.initializer}
    weights |= {output for node in graph.node if node.op_type == "Constant" for output in node.output}
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    element_types = _element_types(graph)
    for node in graph.node:
        where = f"node '{node.name}' ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain '{node.domain}' needs a plugin")
            continue
        entry = table.operators.get(node.op_type)
        if entry is None:
            problems.append(f"{where}: not in the TensorRT {table.tensorrt_version} support table")
            continue
        if not entry["supported"]:
            problems.append(f"{where}: unsupported ({entry['reason']})")
            continue
        problems += _node_problems(node, entry, where, weights, used, element_types)

    io_names = {v.name for v in graph.input} | {v.name for v in graph.output}
    for name, element_type in sorted(element_types.items()):
        allowed = table.tensor_types | (table.io_only_types if name in io_names else frozenset())
        if element_type not in allowed:
            problems.append(f"tensor '{name}': type {element_type} is not a TensorRT type here")
    return problems


def _node_problems(
    node: onnx.NodeProto,
    entry: dict,
    where: str,
    weights: set[str],
    used: set[str],
    element_types: dict[str, str],
) -> list[str]:
    problems = []
    if node.input and node.input[0] in element_types and element_types[node.input[0]] not in entry["types"]:
        problems.append(f"{where}: input type {element_types[node.input[0]]} not in {entry['types']}")
    for index, input_name in entry.get("initializer_inputs", {}).items():
        index = int(index)
        if index < len(node.input) and node.input[index] and node.input[index] not in weights:
            problems.append(f"{where}: input {index} ('{input_name}') must be an initializer")
    for index, output_name in entry.get("unused_outputs", {}).items():
        index = int(index)
        if index < len(node.output) and node.output[index] in used:
            problems.append(f"{where}: output {index} ('{output_name}') is not supported but is used")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    for name, allowed in entry.get("attributes", {}).items():
        if name not in attributes:
            continue
        value = attributes[name]
        value = value.decode() if isinstance(value, bytes) else value
        if allowed == "absent":
            problems.append(f"{where}: attribute '{name}' is not supported")
        elif allowed == "all ones":
            if any(v != 1 for v in value):
                problems.append(f"{where}: attribute '{name}' must be all ones, got {value}")
        elif value not in allowed:
            problems.append(f"{where}: attribute '{name}' = {value!r} not in {allowed}")
    return problems


def _element_types(graph: onnx.GraphProto) -> dict[str, str]:
    """Tensor name -> ONNX element type name, for every typed value (inferred ones included)."""
    types = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("sequence_type"):
            types[value.name] = "SEQUENCE"
        elif value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
    for initializer in graph.initializer:
        types[initializer.name] = onnx.TensorProto.DataType.Name(initializer.data_type)
    return types
