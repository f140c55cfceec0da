"""The tables, CSVs and plots of `make bench` from what `vhs.benchmarks.bench` measured on one preset.

    write_preset_csvs(figures, folder)     perf.csv, stage_split.csv, latency.csv, memory.csv, ...
    write_report(results, output, machine) bench.md (every table), paper_table.csv, ratios.csv, plots

The ratios carry the project's targets (issue 17) and their floors, the FLOP ratios.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vhs.modes import mode_names

from . import plots
from .perf_analyzer import parse_composing_models, parse_csv_rows
from .report import (
    BASELINE_MODE,
    ENGINE_COMPUTE,
    ORCHESTRATOR_STAGE,
    ModeFigures,
    Ratio,
    average_latency_us,
    markdown_table,
    overhead_reason,
    paper_markdown,
    paper_table,
    ratio_markdown,
    stage_order,
    stage_split,
    with_engine_compute,
    write_csv,
)

PAPER_N = 4  # the N of the paper's table and of the targets
THROUGHPUT_CONCURRENCY = 4
# Targets the project set (issue 17), by preset; a callable takes the FLOP floor.
TIME_TARGETS = {"shapes": lambda floor: 0.50, "proportions": lambda floor: 1.15 * floor}
THROUGHPUT_TARGET = 2.0
SERVED_OVER_IN_PROCESS_TARGET = 1.15  # issue 27
# The orchestrator's own time per request (the `vhs` model's server time outside its engine calls, the
# stage split's ORCHESTRATOR_STAGE) at N = PAPER_N, concurrency 1, every mode: its budget (issue 27).
ORCHESTRATOR_BUDGET_MS = 3.0
RUN_FILE = "run.json"
ENGINE_COMPUTE_FILE = "engine_compute.csv"  # each cell's engines' own compute per request (us)


@dataclass(frozen=True)
class Grid:
    """What one preset is measured on."""

    candidates: tuple[int, ...]
    concurrencies: tuple[int, ...]
    measurement_interval_ms: int
    latency_prompts: int  # prompts per N in the interleaved served / in-process phase
    modes: tuple[str, ...] = mode_names()


@dataclass
class PresetFigures:
    """Everything measured on one preset.

    mode_memory: {mode: {"memory_mib", "stubs_peak_rss_mib"}} (vhs.benchmarks.bench.measure_mode_memory).
    latency: {("served <mode>" | "in-process <mode>", N): median ms}.
    cells: one dict per perf_analyzer run: mode, num_candidates, stable, row (its CSV row),
        composing ({engine: stats}).
    engine_memory: {model: {"stubs", "rss_mib", "peak_rss_mib"[, "device_mib"]}} after the grid.
    flops: {engine: FLOPs of one row}.
    seconds: the measurement's duration, server start to the last perf_analyzer run.
    """

    preset: str
    grid: Grid
    mode_memory: dict[str, dict[str, float]]
    latency: dict[tuple[str, int], float]
    cells: list[dict]
    engine_memory: dict[str, dict[str, float]]
    flops: dict[str, float]
    seconds: float
    load_average: tuple[float, float]  # the machine's 1-minute load average at the start and the end


def write_preset_csvs(figures: PresetFigures, folder: Path) -> None:
    """perf.csv, stage_split.csv, engine_compute.csv, latency.csv, mode_memory.csv, memory.csv,
    flops.csv, request_flops.csv and run.json (preset, seconds, grid) of one preset."""
    from vhs.benchmarks.flops import request_flops

    cells = figures.cells
    write_csv(
        folder / "perf.csv",
        [
            {
                "mode": c["mode"],
                "num_candidates": c["num_candidates"],
                "stable": c["stable"],
                **c["row"],
                "Avg latency": average_latency_us(c["row"]),
            }
            for c in cells
        ],
    )
    write_csv(
        folder / "stage_split.csv",
        [
            {
                "mode": c["mode"],
                "num_candidates": c["num_candidates"],
                "concurrency": c["row"]["Concurrency"],
                **stage,
            }
            for c in cells
            for stage in stage_split(c["row"], c["composing"])
        ],
    )
    write_csv(
        folder / ENGINE_COMPUTE_FILE,
        [
            {
                "mode": c["mode"],
                "num_candidates": c["num_candidates"],
                "concurrency": c["row"]["Concurrency"],
                "engine": engine,
                ENGINE_COMPUTE: stats[ENGINE_COMPUTE],
            }
            for c in cells
            for engine, stats in c["composing"].items()
            if ENGINE_COMPUTE in stats
        ],
    )
    write_csv(
        folder / "latency.csv",
        [
            {"runner": runner, "num_candidates": n, "median_ms": ms}
            for (runner, n), ms in sorted(figures.latency.items())
        ],
    )
    write_csv(folder / "mode_memory.csv", [{"mode": m, **v} for m, v in figures.mode_memory.items()])
    write_csv(
        folder / "memory.csv",
        [{"model": model, **values} for model, values in sorted(figures.engine_memory.items())],
    )
    write_csv(folder / "flops.csv", [{"engine": e, "flops_per_row": f} for e, f in figures.flops.items()])
    write_csv(
        folder / "request_flops.csv",
        [
            {"mode": mode, "num_candidates": n, "flops": request_flops(figures.flops, mode, n)}
            for mode in figures.grid.modes
            for n in figures.grid.candidates
        ],
    )
    run = {
        "preset": figures.preset,
        "seconds": figures.seconds,
        "load_average": figures.load_average,
        "grid": asdict(figures.grid),
    }
    (folder / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n")


def read_preset_figures(folder: Path) -> PresetFigures:
    """The figures `write_preset_csvs` wrote to `folder` (with each perf cell's kept stdout), so the
    report can be written again without measuring again (`python -m vhs.benchmarks.bench --report-only`)."""
    run = json.loads((folder / RUN_FILE).read_text())
    grid = Grid(**{key: tuple(v) if isinstance(v, list) else v for key, v in run["grid"].items()})
    engine_compute = {}  # {(mode, n, concurrency): {engine: us}}; absent in a run from before it
    if (folder / ENGINE_COMPUTE_FILE).exists():
        for r in _read_csv(folder / ENGINE_COMPUTE_FILE):
            key = (r["mode"], int(r["num_candidates"]), r["concurrency"])
            engine_compute.setdefault(key, {})[r["engine"]] = r[ENGINE_COMPUTE]
    cells = []
    for row in _read_csv(folder / "perf.csv"):
        mode, n, stable = row.pop("mode"), int(row.pop("num_candidates")), row.pop("stable") == "True"
        row.pop("Avg latency")
        output = (folder / "perf_analyzer" / f"{mode}_n{n}_c{int(row['Concurrency'])}.txt").read_text()
        composing = with_engine_compute(
            parse_composing_models(output).get(row["Concurrency"], {}),
            engine_compute.get((mode, n, row["Concurrency"]), {}),
        )
        cells.append(
            {"mode": mode, "num_candidates": n, "stable": stable, "row": row, "composing": composing}
        )
    latency = {
        (r["runner"], int(r["num_candidates"])): r["median_ms"] for r in _read_csv(folder / "latency.csv")
    }
    mode_memory = {r.pop("mode"): r for r in _read_csv(folder / "mode_memory.csv")}
    engine_memory = {r.pop("model"): r for r in _read_csv(folder / "memory.csv")}
    flops = {r["engine"]: r["flops_per_row"] for r in _read_csv(folder / "flops.csv")}
    return PresetFigures(
        run["preset"],
        grid,
        mode_memory,
        latency,
        cells,
        engine_memory,
        flops,
        run["seconds"],
        tuple(run["load_average"]),
    )


def _read_csv(path: Path) -> list[dict]:
    """A CSV that write_csv wrote, rows in the order written, numeric cells as floats."""
    return parse_csv_rows(path.read_text())


def cell(figures: PresetFigures, mode: str, n: int, concurrency: int) -> dict:
    """The perf cell at these coordinates."""
    return next(
        c
        for c in figures.cells
        if c["mode"] == mode and c["num_candidates"] == n and c["row"]["Concurrency"] == concurrency
    )


def split_at(figures: PresetFigures, mode: str, n: int, concurrency: int) -> list[dict]:
    """The stage split of the perf cell at these coordinates."""
    found = cell(figures, mode, n, concurrency)
    return stage_split(found["row"], found["composing"])


def preset_tables(figures: PresetFigures) -> tuple[list[dict], list[Ratio]]:
    """(the paper's table rows, the ratios) of one preset at N = PAPER_N."""
    from vhs.benchmarks.flops import request_flops

    preset, latency, flops = figures.preset, figures.latency, figures.flops
    modes = figures.grid.modes
    mode_figures = {
        mode: ModeFigures(
            latency[(f"served {mode}", PAPER_N)],
            request_flops(flops, mode, PAPER_N),
            figures.mode_memory[mode]["memory_mib"],
        )
        for mode in modes
    }
    paper = paper_table(mode_figures)
    splits = {mode: split_at(figures, mode, PAPER_N, 1) for mode in modes}
    loaded = {
        mode: split_at(figures, mode, PAPER_N, THROUGHPUT_CONCURRENCY) for mode in ("vhs", BASELINE_MODE)
    }

    def time_ratio(mode: str, target: float | None = None) -> Ratio:
        floor = mode_figures["vhs"].flops / mode_figures[mode].flops
        return Ratio(
            f"{preset}: vhs / {mode} time, N = {PAPER_N}",
            mode_figures["vhs"].time_ms / mode_figures[mode].time_ms,
            target,
            floor,
            reason=overhead_reason({"vhs": splits["vhs"], mode: splits[mode]}),
        )

    clip_floor = mode_figures["vhs"].flops / mode_figures[BASELINE_MODE].flops
    throughput = {
        mode: cell(figures, mode, PAPER_N, THROUGHPUT_CONCURRENCY)["row"]["Inferences/Second"]
        for mode in ("vhs", BASELINE_MODE)
    }
    ratios = [
        time_ratio(BASELINE_MODE, TIME_TARGETS.get(preset, lambda floor: None)(clip_floor)),
        time_ratio("latent"),
        time_ratio("none"),
        Ratio(
            f"{preset}: vhs / clip throughput, N = {PAPER_N}, concurrency {THROUGHPUT_CONCURRENCY}",
            throughput["vhs"] / throughput[BASELINE_MODE],
            THROUGHPUT_TARGET,
            1 / clip_floor,
            lower_is_better=False,
            reason=f"at concurrency {THROUGHPUT_CONCURRENCY}, " + overhead_reason(loaded),
        ),
    ]
    for mode in modes:
        served, in_process = latency[(f"served {mode}", PAPER_N)], latency[(f"in-process {mode}", PAPER_N)]
        ratios.append(
            Ratio(
                f"{preset}: served / in-process {mode}, N = {PAPER_N}, concurrency 1",
                served / in_process,
                SERVED_OVER_IN_PROCESS_TARGET,
                1.0,
                reason=f"served {served:.1f} ms, in-process {in_process:.1f} ms; "
                + overhead_reason({mode: splits[mode]}),
            )
        )
    return paper, ratios


def grid_markdown(figures: PresetFigures) -> str:
    """Throughput (infer/s) and p50 latency (ms) of every cell: a row per mode and N, a column per
    concurrency."""
    grid = figures.grid
    header = ["mode", "N", *(f"c={c} infer/s (p50 ms)" for c in grid.concurrencies)]
    rows = []
    for mode in grid.modes:
        for n in grid.candidates:
            values = []
            for concurrency in grid.concurrencies:
                c = cell(figures, mode, n, concurrency)
                mark = "" if c["stable"] else "*"
                values.append(
                    f"{c['row']['Inferences/Second']:.1f} ({c['row']['p50 latency'] / 1e3:.0f}){mark}"
                )
            rows.append([mode, n, *values])
    return markdown_table(header, rows)


def latency_markdown(figures: PresetFigures) -> str:
    """Median served and in-process request time (ms) per mode and N, concurrency 1."""
    grid, latency = figures.grid, figures.latency
    header = ["N", *(f"served {m}" for m in grid.modes), *(f"in-process {m}" for m in grid.modes)]
    rows = [
        [n, *(f"{latency[(f'{kind} {m}', n)]:.1f}" for kind in ("served", "in-process") for m in grid.modes)]
        for n in grid.candidates
    ]
    return markdown_table(header, rows)


def split_markdown(figures: PresetFigures, n: int = PAPER_N) -> str:
    """The stage split at concurrency 1: compute / overhead ms of each stage, a column per mode."""
    modes = figures.grid.modes
    splits = {mode: {s["stage"]: s for s in split_at(figures, mode, n, 1)} for mode in modes}
    stages = sorted({stage for mode in modes for stage in splits[mode]}, key=stage_order)
    rows = []
    for stage in stages:
        values = [
            f"{splits[m][stage]['compute_ms']:.2f} / {splits[m][stage]['overhead_ms']:.2f}"
            if stage in splits[m]
            else ""
            for m in modes
        ]
        rows.append([stage, *values])
    totals = [
        " / ".join(
            f"{sum(s[part] for s in splits[m].values()):.2f}" for part in ("compute_ms", "overhead_ms")
        )
        for m in modes
    ]
    return markdown_table(["stage (compute / overhead ms)", *modes], [*rows, ["total", *totals]])


def memory_markdown(figures: PresetFigures) -> str:
    """Each model's stubs, RSS and peak RSS after the grid (device memory where reported)."""
    memory = figures.engine_memory
    device = any("device_mib" in values for values in memory.values())
    header = ["model", "processes", "RSS (MiB)", "peak RSS (MiB)", *(["device (MiB)"] if device else [])]
    rows = [
        [
            model,
            int(v["stubs"]) or 1,
            f"{v['rss_mib']:.0f}",
            f"{v['peak_rss_mib']:.0f}",
            *([f"{v.get('device_mib', 0):.0f}"] if device else []),
        ]
        for model, v in sorted(memory.items())
    ]
    return markdown_table(header, rows)


def flops_markdown(figures: PresetFigures) -> str:
    """MFLOP per row of each engine and per request of each mode at N = PAPER_N."""
    from vhs.benchmarks.flops import request_flops

    flops = figures.flops
    rows = [[engine, f"{value / 1e6:,.2f}"] for engine, value in flops.items()]
    rows += [
        [f"request {mode}, N = {PAPER_N}", f"{request_flops(flops, mode, PAPER_N) / 1e6:,.2f}"]
        for mode in figures.grid.modes
    ]
    return markdown_table(["engine (per row) / request", "MFLOP"], rows)


def write_report(results: list[PresetFigures], output: Path, machine: str) -> str:
    """bench.md, paper_table.csv, ratios.csv and the plots; returns the Markdown."""
    sections = [f"# make bench\n\nMachine: {machine}. One run; compare ratios, not milliseconds.\n"]
    paper_rows, all_ratios = [], []
    for figures in results:
        preset = figures.preset
        paper, ratios = preset_tables(figures)
        paper_rows += [{"preset": preset, **row} for row in paper]
        all_ratios += ratios
        sections += [
            f"## {preset} ({figures.seconds:.0f} s; load average {figures.load_average[0]:.1f} at the "
            f"start, {figures.load_average[1]:.1f} at the end, on {os.cpu_count()} CPUs)",
            f"### The paper's table (N = {PAPER_N}, concurrency 1, served)\n\n{paper_markdown(paper)}",
            f"### Ratios\n\n{ratio_markdown(ratios)}",
            f"### perf_analyzer grid (`*`: not stable within 30 %)\n\n{grid_markdown(figures)}",
            f"### Served vs in-process (median ms, concurrency 1)\n\n{latency_markdown(figures)}",
            f"### Stage split (N = {PAPER_N}, concurrency 1)\n\n{split_markdown(figures)}",
            f"### Memory after the grid\n\n{memory_markdown(figures)}",
            f"### FLOPs\n\n{flops_markdown(figures)}",
        ]
        modes, candidates = figures.grid.modes, figures.grid.candidates
        plots.throughput(preset, modes, candidates, figures.cells, output / f"{preset}_throughput.png")
        plots.latency(preset, modes, candidates, figures.latency, output / f"{preset}_latency.png")
        plots.stage_split(
            {mode: split_at(figures, mode, PAPER_N, 1) for mode in figures.grid.modes},
            f"{preset}: where a request's time goes, N = {PAPER_N}, concurrency 1",
            output / f"{preset}_stage_split.png",
        )
    write_csv(output / "paper_table.csv", paper_rows)
    write_csv(
        output / "ratios.csv",
        [
            {
                "ratio": r.name,
                "measured": r.measured,
                "target": r.target,
                "floor": r.floor,
                "met": r.met,
                "reason": r.reason,
            }
            for r in all_ratios
        ],
    )
    markdown = "\n\n".join(sections) + "\n"
    (output / "bench.md").write_text(markdown)
    return markdown


def orchestrator_own_ms(figures: PresetFigures) -> dict[str, float]:
    """{mode: the orchestrator's own milliseconds per request} at N = PAPER_N, concurrency 1."""
    return {
        mode: next(
            stage["overhead_ms"]
            for stage in split_at(figures, mode, PAPER_N, 1)
            if stage["stage"] == ORCHESTRATOR_STAGE
        )
        for mode in figures.grid.modes
    }


def orchestrator_check(
    own_ms: dict[tuple[str, str], float], budget_ms: float = ORCHESTRATOR_BUDGET_MS
) -> tuple[str, bool]:
    """(one line per (preset, mode) with its orchestrator time against `budget_ms`, ok or FAIL;
    whether every one is within the budget). own_ms: {(preset, mode): ms per request}."""
    lines, within = [], True
    for (preset, mode), ms in own_ms.items():
        ok = ms <= budget_ms
        within &= ok
        lines.append(
            f"orchestrator own time, {preset} {mode} N = {PAPER_N} concurrency 1: {ms:.2f} ms per request "
            f"(budget {budget_ms:.2f} ms) {'ok' if ok else 'FAIL'}"
        )
    return "\n".join(lines), within
