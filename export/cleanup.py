"""Graph cleanup after export, for every backend: constant folding, sequence ops as plain `Split`,
initializers instead of `Constant` nodes, shape inference.

Why: the exporter writes `ReduceMean`/`Slice` axes as `Reshape(Constant)` chains and `aten.split` as
`SplitToSequence` + `SequenceAt`. TensorRT's ONNX parser needs those axes as initializers and has no
sequence ops; ONNX Runtime simply runs fewer nodes.

The passes are onnxscript's constant folder (which also rewrites `SplitToSequence` with a constant
split into `Split` and resolves each `SequenceAt` to one of its outputs) and onnx_ir's common passes.
onnxscript's *rewrite rules* are deliberately not run: they treat constants within 1e-8 of zero as
zero and delete the `+ 1e-15` epsilons of Sana's linear attention, turning 0/0 into NaN
(docs/gpu-deployment.md). The parity check after cleanup is what proves the graph still equals PyTorch
(and that ONNX Runtime loads it: onnx's checker is not run here, it cannot follow external data held
in memory).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript.optimizer import fold_constants

# Folding repeats until nothing changes; three rounds were always enough for these graphs.
MAX_FOLD_ROUNDS = 5


@dataclass(frozen=True)
class CleanupResult:
    nodes_before: int
    nodes_after: int
    op_counts: Counter  # op type -> count, after cleanup


def clean_graph(path: Path) -> CleanupResult:
    """Clean the ONNX file at `path` in place; weights stay inline or external as they were."""
    model = ir.load(path)
    nodes_before = sum(1 for _ in model.graph.all_nodes())
    common_passes.InlinePass()(model)
    for _ in range(MAX_FOLD_ROUNDS):
        folded = fold_constants(model, onnx_shape_inference=True)
        removed = common_passes.RemoveUnusedNodesPass()(model)
        if not (folded.modified or removed.modified):
            break
    ir.passes.Sequential(
        common_passes.RemoveUnusedFunctionsPass(),
        common_passes.RemoveUnusedOpsetsPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.DeduplicateInitializersPass(),
        common_passes.ShapeInferencePass(),
        common_passes.TopologicalSortPass(),
    )(model)
    external = _external_data_file(model)
    ir.save(model, path, external_data=external)
    counts = Counter(node.op_type for node in model.graph.all_nodes())
    return CleanupResult(nodes_before, sum(counts.values()), counts)


def _external_data_file(model: ir.Model) -> str | None:
    """The external-data file name the exporter used (graphs over 2 GB), else None (weights inline)."""
    for initializer in model.graph.initializers.values():
        if isinstance(initializer.const_value, ir.ExternalTensor):
            return Path(initializer.const_value.location).name
    return None
