"""`vhs-export`: a preset -> ONNX graphs (+ TensorRT plans) -> a ready-to-serve Triton model repository.

    vhs-export --preset tiny-random --output build/tiny-random
    vhs-export --preset shapes --output build/shapes --backend tensorrt_plan --precision fp16   # GPU host

Output folder: `manifest.json`, `onnx/<engine>.onnx` (a folder `<engine>.onnx/` for a graph over
2 GB), `model_repository/`, `export_report.md`. Everything is built in a temporary sibling folder and
renamed into place at the end, so a failed export leaves nothing half-written. The preset's
components are loaded one group at a time (text encoder; DiT; VAE; each verifier part; LLM), so the
peak memory is that of the largest component, not of the whole preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime
from tqdm import tqdm

from vhs.engines import Engine, build_engine, engine_components, served_engines
from vhs.modes import llm_engines, table_entries
from vhs.presets import load_preset, load_preset_config
from vhs.presets.folders import check_component_sizes, component_widths
from vhs.runtime.manifest import (
    FORMAT_VERSION,
    LLM_TOKENIZER_DIR,
    TEXT_TOKENIZER_DIR,
    artifact_bytes,
    artifact_sha256,
)
from vhs.runtime.onnx_engine import onnx_model_file

from .backends import BACKENDS, Backend
from .cleanup import clean_graph
from .graphs import EXAMPLE_BATCH, EXTERNAL_DATA_THRESHOLD_BYTES, ExampleChain, export_onnx, graph_io
from .parity import ATOL, RTOL, check_parity, inspect_model
from .precision import PolicyCheck, activation_ranges, check_policy, mixed_precision_graph
from .precision import fp32_nodes as policy_fp32_nodes
from .repository import Scheduling, write_repository
from .tensorrt import (
    DEFAULT_BUILDER_OPTIMIZATION_LEVEL,
    PRECISIONS,
    build_plan,
    check_plan_accuracy,
    engine_precision,
    opt_batch,
    optimization_profile,
    plan_recipe,
    require_tensorrt,
)
from .tensorrt_support import SupportTable, check_tensorrt_readiness, load_support_table

PARITY_BATCHES = (1, 4)

onnxruntime.set_default_logger_severity(3)  # graph-optimiser notes are not the user's concern


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-export", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="tiny-random, shapes, or a preset folder")
    parser.add_argument("--output", type=Path, required=True, help="folder to create (replaced if it exists)")
    parser.add_argument("--split-block", type=int, default=None, help="l*: DiT block the verifier reads")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--backend", choices=BACKENDS, default="python", help="how Triton runs the engines")
    parser.add_argument("--trt", action="store_true", help="shorthand for --backend tensorrt_plan")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="GPU precision under the precision policy (export/precision.py: weight GEMMs reduced, the "
        "rest fp32; the VAE fp32, the text encoder fp32 for fp16); refused where the backend lacks it",
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="default: the preset's max candidates"
    )
    parser.add_argument("--instances", type=int, default=1, help="instances of each engine model")
    parser.add_argument(
        "--orchestrator-instances",
        type=int,
        default=Scheduling.orchestrator_instances,
        help="instances of the vhs model",
    )
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=Scheduling.max_queue_delay_us,
        help="dynamic batcher queue delay",
    )
    parser.add_argument(
        "--timing-cache", type=Path, default=None, help="TensorRT timing cache (default: beside --output)"
    )
    parser.add_argument(
        "--builder-optimization-level", type=int, default=DEFAULT_BUILDER_OPTIMIZATION_LEVEL, choices=range(6)
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.trt:
        args.backend = "tensorrt_plan"
    staging = None
    try:
        load_preset_config(args.preset)  # fail on a bad name before anything is written
        if BACKENDS[args.backend].builds_plans:
            require_tensorrt()
        output = args.output.resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
        summary = export(args, staging)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
        staging = None
    except Exception as error:  # one clear line, no traceback, nothing half-written
        print(f"vhs-export: error: {error}", file=sys.stderr)
        return 2
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    print(summary)
    print(f"model repository: {output / 'model_repository'}")
    return 0


def export(args: argparse.Namespace, folder: Path) -> str:
    """Export into `folder`; returns the one-screen summary."""
    config = load_preset_config(args.preset)
    if args.split_block is not None:
        config = dataclasses.replace(config, split_block=args.split_block)
    names = served_engines(config)
    with tqdm(total=len(names) + 2, desc="export", unit="step") as progress:
        return _export(args, config, names, folder, progress)


def _export(args: argparse.Namespace, config, names: list[str], folder: Path, progress: tqdm) -> str:
    max_batch_size = args.max_batch_size or config.max_candidates
    if max_batch_size < config.max_candidates:
        raise ValueError(
            f"--max-batch-size must be at least max_candidates ({config.max_candidates}), "
            f"got {max_batch_size}"
        )
    backend = BACKENDS[args.backend]
    if args.precision not in backend.precisions:  # never replaced silently by another precision
        hint = "; tensorrt_plan builds bf16" if args.precision == "bf16" else ""
        raise ValueError(
            f"--precision {args.precision} is not available with --backend {backend.name} (it serves "
            f"{', '.join(backend.precisions)}){hint}"
        )
    (folder / "onnx").mkdir()
    support_table = load_support_table()
    exported, widths, chain = [], {}, None
    # One group of components in memory at a time: the engines that share them (the DiT's two halves)
    # are exported together, then the components are dropped before the next group is loaded.
    for components, group in itertools.groupby(names, key=engine_components):
        progress.set_postfix_str(f"loading {', '.join(components)}")
        preset = load_preset(args.preset, components=components)
        preset.config = config
        widths |= component_widths(preset)
        check_component_sizes(widths)  # pairs loaded in different groups are checked once both are seen
        if chain is None:
            chain = ExampleChain(preset, EXAMPLE_BATCH)
            tokenizers = {TEXT_TOKENIZER_DIR: preset.tokenizer, LLM_TOKENIZER_DIR: preset.llm_tokenizer}
        for name in group:
            progress.set_postfix_str(name)
            engine = build_engine(preset, name)  # raises ValueError if l* is out of range
            inputs = chain.inputs_for(name, engine, preset)
            exported.append(
                _export_graph(
                    name,
                    engine,
                    inputs,
                    chain,
                    folder,
                    backend,
                    dict(config.engine_max_batch).get(name, max_batch_size),
                    config.default_candidates,
                    support_table,
                    args,
                )
            )
            chain.record(name, engine, inputs)
            progress.update()
        del preset, engine
        gc.collect()

    progress.set_postfix_str("model repository")
    images = chain.state["images"]
    manifest = {
        "format_version": FORMAT_VERSION,
        "preset": dataclasses.asdict(config),
        "latent_shape": list(chain.latent_shape),
        "image_shape": [images.shape[2], images.shape[3], images.shape[1]],
        "backend": backend.name,
        "device": "gpu" if backend.on_gpu else "cpu",
        "precision": args.precision if backend.on_gpu else "fp32",
        "max_batch_size": max_batch_size,
        # The served modes' table entries travel with the graphs: the runtime serves the modes the
        # repository was exported with, a verifier kind added to the table where it was exported included.
        "modes": table_entries(config.modes),
        "engines": {graph.name: graph.manifest_entry for graph in exported},
    }
    if backend.builds_plans:  # a plan only loads in a Triton built with the same TensorRT
        manifest["tensorrt_version"] = require_tensorrt()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_repository(
        folder / "model_repository",
        manifest,
        backend,
        {graph.name: graph.served_file for graph in exported},
        tokenizers,
        Scheduling(args.instances, args.orchestrator_instances, args.max_queue_delay_us),
    )
    progress.update()
    summary = _summary(args, config, exported, support_table.tensorrt_version)
    (folder / "export_report.md").write_text(
        f"# Export report\n\n```\n{summary}\n```\n\n"
        + "\n\n".join(f"### {graph.name}\n```\n{graph.inspection}\n```" for graph in exported)
    )
    progress.update()
    return summary


@dataclasses.dataclass
class ExportedGraph:
    """One exported engine: what goes into the repository, the manifest and the export report."""

    name: str
    served_file: Path  # the ONNX graph (a file, or a folder with external data), or the plan built from it
    manifest_entry: dict  # inputs, outputs, file, sha256
    megabytes: float
    parity_errors: list[float]  # max abs error at each of PARITY_BATCHES
    export_s: float
    inspection: str  # polygraphy's summary of the graph
    nodes: tuple[int, int]  # before and after the graph cleanup
    tensorrt_issues: tuple[int, int]  # what TensorRT's parser would reject, before and after the cleanup


def _export_graph(
    name: str,
    engine: Engine,
    inputs: dict,
    chain: ExampleChain,
    folder: Path,
    backend: Backend,
    max_batch_size: int,
    default_candidates: int,
    support_table: SupportTable,
    args: argparse.Namespace,
) -> ExportedGraph:
    """One engine -> cleaned ONNX graph checked against PyTorch and against TensorRT's support table
    (-> TensorRT plan checked against ONNX Runtime where the backend builds one). `max_batch_size`:
    this engine's (the preset's engine_max_batch where it names the engine).

    args: the command line (opset, precision, TensorRT build settings). Raises RuntimeError when the
    graph differs from PyTorch, TensorRT would reject it, or a plan differs from ONNX Runtime.
    """
    start = time.perf_counter()
    path = export_onnx(name, engine, inputs, folder / "onnx", args.opset)
    raw_issues = check_tensorrt_readiness(onnx_model_file(path), support_table)  # what the cleanup fixes
    cleanup = clean_graph(onnx_model_file(path))
    export_s = time.perf_counter() - start
    parity = [check_parity(engine, inputs, path, batch) for batch in PARITY_BATCHES]
    failed = [p for p in parity if not p.passed]
    if failed:
        raise RuntimeError(
            f"{name}: ONNX Runtime differs from PyTorch (max error {failed[0].max_abs_error:.3g} "
            f"at batch {failed[0].batch}) or produced NaN/Inf"
        )
    issues = check_tensorrt_readiness(onnx_model_file(path), support_table)
    graph_inputs, graph_outputs = graph_io(path)
    served_file = path
    precision = engine_precision(name, args.precision) if backend.on_gpu else "fp32"
    policy = _checked_policy(name, onnx_model_file(path), inputs, precision) if precision != "fp32" else None
    if backend.typed_graph and policy is not None:
        served_file = folder / "onnx" / f"{name}.{precision}.onnx"
        policy.save_typed_graph(served_file)
    if backend.builds_plans:
        if issues:
            raise RuntimeError(f"{name}: TensorRT would reject the graph: {'; '.join(issues[:5])}")
        served_file = folder / "plans" / f"{name}.plan"
        served_file.parent.mkdir(exist_ok=True)
        profile = optimization_profile(
            graph_inputs,
            min(opt_batch(name, default_candidates), max_batch_size),
            max_batch_size,
            _token_bounds(name, chain),
        )
        ranges = None if policy is None else policy.ranges
        _build_checked_plan(name, onnx_model_file(path), served_file, profile, inputs, args, ranges)
    entry = {
        "inputs": graph_inputs,
        "outputs": graph_outputs,
        "max_batch_size": max_batch_size,  # the orchestrator splits a larger call into chunks
        "file": backend.graph_file,
        "sha256": artifact_sha256(served_file),
        "precision": precision,
    }
    if policy is not None:
        entry["precision_policy"] = policy.summary
    return ExportedGraph(
        name,
        served_file,
        entry,
        artifact_bytes(path) / 1e6,
        [p.max_abs_error for p in parity],
        export_s,
        inspect_model(path),
        (cleanup.nodes_before, cleanup.nodes_after),
        (len(raw_issues), len(issues)),
    )


@dataclasses.dataclass
class CheckedPolicy:
    """The precision policy of one engine, checked on its example inputs (export/precision.py)."""

    model: onnx.ModelProto
    precision: str
    fp32_nodes: list[str]
    ranges: dict[str, float]
    check: PolicyCheck

    @property
    def summary(self) -> dict:
        return {
            "fp32_nodes": len(self.fp32_nodes),
            "reduced_nodes": len(self.model.graph.node) - len(self.fp32_nodes),
            "max_abs_error_vs_fp32": self.check.max_abs_error,
        }

    def save_typed_graph(self, path: Path) -> None:
        """The served graph with the policy's casts written in: one file, or above protobuf's limit
        Triton's directory form (`path/model.onnx` + `model.onnx.data`), as export_onnx writes."""
        typed = mixed_precision_graph(self.model, self.precision, self.fp32_nodes)
        if typed.ByteSize() <= EXTERNAL_DATA_THRESHOLD_BYTES:
            onnx.save(typed, str(path))
            return
        path.mkdir()
        onnx.save(typed, str(onnx_model_file(path)), save_as_external_data=True, location="model.onnx.data")


def _checked_policy(name: str, onnx_path: Path, inputs: dict, precision: str) -> CheckedPolicy:
    """The engine's fp32 node set under the precision policy, calibrated and checked on the example
    inputs (the preset's own weights and the upstream engines' real outputs); raises RuntimeError
    when the reduced-precision graph leaves fp32's results on them."""
    model = onnx.load(str(onnx_path))
    feed = {key: value.numpy() for key, value in inputs.items()}
    ranges = activation_ranges(model, [feed])
    keep = policy_fp32_nodes(model, ranges, precision)
    check = check_policy(model, feed, precision, keep)
    if not check.passed:
        raise RuntimeError(
            f"{name}: {check.describe()} against fp32 on the example inputs under the precision policy; "
            "export it with --precision bf16 or fp32"
        )
    return CheckedPolicy(model, precision, keep, ranges, check)


def _build_checked_plan(
    name: str, onnx_path: Path, plan_path: Path, profile: dict, example: dict, args, ranges=None
) -> None:
    """Build `name`'s plan (precision and fp32 layers per engine, `ranges` from the policy check) and
    compare it with ONNX Runtime at batch 1 and at its opt batch; raises if it is off or produces
    NaN/Inf."""
    timing_cache = args.timing_cache or args.output.resolve().parent / "tensorrt-timing.cache"
    recipe = plan_recipe(
        name, onnx_path, profile, args.precision, timing_cache, args.builder_optimization_level, ranges
    )
    build_plan(onnx_path, plan_path, recipe)
    batches = sorted({dims[0] for level in ("min", "opt") for dims in profile[level].values()})
    feeds = {
        rows: {key: value[[i % len(value) for i in range(rows)]].numpy() for key, value in example.items()}
        for rows in batches
    }
    failed = [a for a in check_plan_accuracy(onnx_path, plan_path, feeds, recipe.precision) if not a.passed]
    if failed:
        raise RuntimeError(
            f"{name}: the {recipe.precision} plan differs from ONNX Runtime (max error "
            f"{failed[0].max_abs_error:.3g} at batch {failed[0].batch}) or produced NaN/Inf"
        )


def _token_bounds(name: str, chain: ExampleChain) -> dict:
    """TensorRT bounds of an LLM's visual-token axis: every token count of the served modes it scores
    must fit (opt: the first mode's, VHS for the shared `llm`). The visual encoders run before it."""
    if name not in llm_engines():
        return {}
    counts = chain.visual_token_counts(name)
    return {"visual_tokens": {1: (min(counts), counts[0], max(counts))}}


def _summary(args: argparse.Namespace, config, exported: list[ExportedGraph], tensorrt_version: str) -> str:
    lines = [
        f"preset {config.name}, l* = {config.split_block}, backend {args.backend}, opset {args.opset}",
        f"{'graph':<18}{'MB':>8}{'err b=1':>11}{'err b=4':>11}{'export s':>10}{'nodes':>13}"
        f"{'TRT issues':>12}",
    ]
    lines += [
        f"{g.name:<18}{g.megabytes:>8.2f}{g.parity_errors[0]:>11.2e}{g.parity_errors[1]:>11.2e}{g.export_s:>10.1f}"
        f"{'{}->{}'.format(*g.nodes):>13}{'{}->{}'.format(*g.tensorrt_issues):>12}"
        for g in exported
    ]
    lines.append(
        f"parity: ONNX Runtime vs PyTorch eager (polygraphy), atol {ATOL:g}, rtol {RTOL:g}, no NaN/Inf"
    )
    lines.append(
        f"nodes, TRT issues: before -> after the graph cleanup; issues: what the TensorRT "
        f"{tensorrt_version} ONNX parser would reject (support table)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
