"""The tables of `make bench`, from measured figures to CSV rows and Markdown: pure functions.

    stage_split(row, composing)        one perf_analyzer cell -> per-stage compute and overhead (ms)
    with_engine_compute(...)           the engines' own compute added to a cell's engine stats
    paper_table(figures, ...)          the paper's table: time / FLOPs / memory saving vs the CLIP verifier
    ratio_rows / ratio_markdown        every ratio next to its target and its floor, with the reason
    markdown_table / write_csv         formatting

All times in milliseconds per request unless a name says otherwise.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vhs.modes import MODES, all_engines

BASELINE_MODE = "clip"
# The paper's savings of VHS against the CLIP verifier (SANA-Sprint 1.6B on an H100 at 1024 px).
PAPER_SAVINGS = {"vhs": {"time": 0.633, "flops": 0.51, "memory": 0.145}}
ORCHESTRATOR_STAGE = "orchestrator"  # the vhs model's own time outside its engine calls
CLIENT_STAGE = "client + gRPC"  # round trip minus the time the server holds the request
US_PER_MS = 1e3
# The columns of perf_analyzer's `-f` CSV that add up to the average round trip (microseconds).
SERVER_PARTS = ("Server Queue", "Server Compute Input", "Server Compute Infer", "Server Compute Output")
CLIENT_PARTS = ("Client Send", "Network+Server Send/Recv", "Client Recv")
# An engine's own ONNX Runtime compute per request (benchmarks/engine_compute.py), in its stats.
ENGINE_COMPUTE = "engine_compute_us"


def stage_split(row: Mapping[str, float | str], composing: Mapping[str, Mapping[str, float]]) -> list[dict]:
    """Where one request's time goes, from one perf_analyzer cell (concurrency 1 is the clean case).

    row: the cell's `-f` CSV row (microseconds: SERVER_PARTS and CLIENT_PARTS); composing: its
        engines' stats (`vhs.benchmarks.perf_analyzer.parse_composing_models`).
    Returns one dict per stage (`stage_order`) with `stage`, `compute_ms`, `overhead_ms`, `total_ms`.
    An engine's compute is the graph's own: the time inside ONNX Runtime's run the engine reports
    (its stats' ENGINE_COMPUTE, `with_engine_compute`); for an engine without it (Triton's own
    onnxruntime or tensorrt_plan backend), Triton's `compute infer`. Its overhead is the rest of its
    request latency: queue, input/output, Triton overhead and, on the Python backend, the stub's
    tensor exchange and batching around the run.
    Every engine is called once per request (`vhs.best_of_n`), so its averages are per request. The
    orchestrator's overhead is its compute minus its engine calls (BLS hops, request parsing,
    Python), plus its own queue and I/O; the client's is the send, receive and network time.
    """
    stages = []
    for engine, stats in sorted(composing.items(), key=lambda item: stage_order(item[0])):
        compute = stats.get(ENGINE_COMPUTE, stats["compute_infer_us"])
        stages.append(_stage(engine, compute, stats["request_latency_us"] - compute))
    engines_us = sum(stats["request_latency_us"] for stats in composing.values())
    server_us = sum(float(row[part]) for part in SERVER_PARTS)
    stages.append(_stage(ORCHESTRATOR_STAGE, 0.0, server_us - engines_us))
    stages.append(_stage(CLIENT_STAGE, 0.0, sum(float(row[part]) for part in CLIENT_PARTS)))
    return stages


def with_engine_compute(
    composing: Mapping[str, Mapping[str, float]], compute_us: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """`composing` with ENGINE_COMPUTE (microseconds per request) added to the engines in `compute_us`."""
    return {
        engine: {**stats, **({ENGINE_COMPUTE: compute_us[engine]} if engine in compute_us else {})}
        for engine, stats in composing.items()
    }


def average_latency_us(row: Mapping[str, float | str]) -> float:
    """A perf_analyzer CSV row's average round trip: the sum of its parts (the CSV has no total)."""
    return sum(float(row[part]) for part in (*CLIENT_PARTS, *SERVER_PARTS))


def stage_order(stage: str) -> int:
    """Sort key of a stage name: engines in the mode table's order, then the orchestrator and the client."""
    order = [*all_engines(), ORCHESTRATOR_STAGE, CLIENT_STAGE]
    return order.index(stage) if stage in order else len(order)


def _stage(name: str, compute_us: float, overhead_us: float) -> dict:
    return {
        "stage": name,
        "compute_ms": compute_us / US_PER_MS,
        "overhead_ms": overhead_us / US_PER_MS,
        "total_ms": (compute_us + overhead_us) / US_PER_MS,
    }


@dataclass(frozen=True)
class ModeFigures:
    """What one mode costs per request at one N: time (ms), FLOPs, memory of its engines (MiB)."""

    time_ms: float
    flops: float
    memory_mib: float


def paper_table(figures: Mapping[str, ModeFigures]) -> list[dict]:
    """The paper's table: per mode, its figures and its saving against the CLIP verifier (1 - x / CLIP).

    figures: {mode: ModeFigures}; must hold BASELINE_MODE. Rows in the mode table's order.
    """
    base = figures[BASELINE_MODE]
    rows = []
    for mode in (m for m in MODES if m in figures):
        own = figures[mode]
        rows.append(
            {
                "mode": mode,
                "time_ms": own.time_ms,
                "time_saving": 1 - own.time_ms / base.time_ms,
                "gflop": own.flops / 1e9,
                "flop_saving": 1 - own.flops / base.flops,
                "memory_mib": own.memory_mib,
                "memory_saving": 1 - own.memory_mib / base.memory_mib,
            }
        )
    return rows


def paper_markdown(rows: Sequence[dict]) -> str:
    """The paper's table as Markdown, the published savings of VHS beside the measured ones."""

    def published(mode: str, key: str) -> str:
        value = PAPER_SAVINGS.get(mode, {}).get(key)
        return "" if value is None or mode == BASELINE_MODE else f" (paper {value:.1%})"

    header = ["verifier", "time (ms)", "time saving", "GFLOP", "FLOP saving", "memory (MiB)", "memory saving"]
    cells = [
        [
            row["mode"],
            f"{row['time_ms']:.1f}",
            f"{row['time_saving']:.1%}{published(row['mode'], 'time')}",
            f"{row['gflop']:.3g}",
            f"{row['flop_saving']:.1%}{published(row['mode'], 'flops')}",
            f"{row['memory_mib']:.0f}",
            f"{row['memory_saving']:.1%}{published(row['mode'], 'memory')}",
        ]
        for row in rows
    ]
    return markdown_table(header, cells)


@dataclass(frozen=True)
class Ratio:
    """A measured ratio, the target the issue sets, and the floor the compute allows (None: none set).

    lower_is_better: a time ratio (target is a ceiling); False for a throughput ratio (a minimum).
    """

    name: str
    measured: float
    target: float | None
    floor: float | None
    lower_is_better: bool = True
    reason: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.measured <= self.target if self.lower_is_better else self.measured >= self.target


def ratio_markdown(ratios: Iterable[Ratio]) -> str:
    """Every ratio next to its target and floor; a missed target shows its measured reason."""
    header = ["ratio", "measured", "target", "floor (FLOPs)", "met", "where the time goes"]
    cells = []
    for ratio in ratios:
        sign = "<=" if ratio.lower_is_better else ">="
        cells.append(
            [
                ratio.name,
                f"{ratio.measured:.3f}",
                "-" if ratio.target is None else f"{sign} {ratio.target:.2f}",
                "-" if ratio.floor is None else f"{ratio.floor:.2f}",
                {None: "-", True: "yes", False: "no"}[ratio.met],
                ratio.reason if ratio.met is False else "",
            ]
        )
    return markdown_table(header, cells)


def overhead_reason(splits: Mapping[str, Sequence[dict]]) -> str:
    """The measured reason a time ratio misses its floor: the share of each mode's request that is
    overhead rather than engine compute. splits: {mode: stage_split(...)} of the same coordinates."""
    parts = []
    for mode, stages in splits.items():
        overhead = sum(stage["overhead_ms"] for stage in stages)
        total = sum(stage["total_ms"] for stage in stages)
        parts.append(f"{mode} {overhead / total:.0%} ({overhead:.1f} of {total:.1f} ms)")
    return "overhead, not engine compute: " + ", ".join(parts)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; columns after the first are right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Rows of dicts -> CSV; the columns are the union of the rows' keys, in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
