"""`make bench` / `make bench-quick`: the served path measured end to end, per preset, in one run.

For each preset's exported repository, one real Triton server (vhs/serving/server.py):
    memory      a few requests per mode, modes in the order in which each engine's batch only
                grows (none, vhs, latent, clip), each engine stub's peak RSS read after each mode:
                a mode's memory is the sum over the engines it calls
    latency     served (gRPC round trip) and in-process (the same ONNX graphs in ONNX Runtime,
                benchmarks/in_process.py) request times of every mode at every N, interleaved
                prompt by prompt so machine noise hits every column alike (concurrency 1)
    perf        perf_analyzer on the `vhs` model for every mode x N x concurrency, with the
                shipped real prompts (benchmarks/input_data.py) and the engines as BLS composing
                models; each cell's CSV and stdout kept; the stage split from each cell
    memory      every engine model's peak RSS after the grid (device memory where a GPU is)
and FLOPs per engine row (torch.utils.flop_counter) from the preset's modules. Then the paper's
table (time / FLOPs / memory saving of VHS and AE-latent against the CLIP verifier), every ratio
next to its target and floor, CSV + Markdown + PNG under --output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from client.vhs_client import VHSClient
from vhs import protocol as P
from vhs.modes import GENERATION_CHAIN, MODES, mode_names
from vhs.serving.manifest import MANIFEST_FILE, artifact_bytes, load_manifest
from vhs.serving.perf_analyzer import PerfAnalyzerError, run_perf_analyzer
from vhs.serving.server import TritonServer

from . import plots
from .in_process import InProcessPipeline
from .input_data import shipped_prompts, variant
from .latency import measure
from .memory import MIB, model_memory_mib
from .report import (
    BASELINE_MODE,
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
    write_csv,
)

PAPER_N = 4  # the N of the paper's table and of the targets
THROUGHPUT_CONCURRENCY = 4
MEMORY_REQUESTS = 3  # per mode, before the grid
# Targets the project set (issue 17), by preset; a callable takes the FLOP floor.
TIME_TARGETS = {"shapes": lambda floor: 0.50, "proportions": lambda floor: 1.15 * floor}
THROUGHPUT_TARGET = 2.0
SERVED_OVER_IN_PROCESS_TARGET = 1.10
# perf_analyzer's default 10 % stability is rarely reached on a shared 2-core machine: a cell that
# misses this one within its windows is measured again over a fixed request count (no stability
# check) and marked unstable.
STABILITY = ("--stability-percentage=30", "--max-trials=6")
UNSTABLE_REQUESTS_PER_CLIENT = 16


@dataclass(frozen=True)
class Grid:
    """What one preset is measured on."""

    candidates: tuple[int, ...]
    concurrencies: tuple[int, ...]
    measurement_interval_ms: int
    latency_prompts: int  # prompts per N in the interleaved served / in-process phase
    modes: tuple[str, ...] = mode_names()


FULL = Grid((1, 2, 4, 8), (1, 2, 4, 8), measurement_interval_ms=2000, latency_prompts=46)
QUICK = Grid((1, PAPER_N), (1, THROUGHPUT_CONCURRENCY), measurement_interval_ms=1500, latency_prompts=12)
# A preset after the first (compute-heavy, e.g. proportions): the paper's point only.
SECONDARY = Grid((PAPER_N,), (1, THROUGHPUT_CONCURRENCY), measurement_interval_ms=3000, latency_prompts=6)


def memory_order(modes: Sequence[str]) -> list[str]:
    """Modes ordered so that every engine's batch never shrinks from one mode to the next: no verifier
    first, then by how far along the chain every candidate runs (vhs, latent, clip)."""
    return sorted(modes, key=lambda m: (MODES[m].verifies, GENERATION_CHAIN.index(MODES[m].reads)))


def measure_mode_memory(
    server: TritonServer, repository: Path, modes: Sequence[str], prompts: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{mode: {"memory_mib", "stubs_peak_rss_mib"}} of the engines a mode calls, N = PAPER_N.

    memory_mib: their weights (graph bytes) plus the resident memory their stubs grew by from the
    server's start through this mode's requests (activations, ONNX Runtime's arena): the analogue of
    the paper's model memory. The ~80 MiB of Python and ONNX Runtime every stub holds before its
    first request is left out of it; stubs_peak_rss_mib is the whole resident peak, stubs included.
    NaN where an engine has no stub of its own (an in-process backend on an NGC container).
    """
    manifest = load_manifest(repository / P.ORCHESTRATOR_MODEL / "1" / MANIFEST_FILE)
    weights_mib = {
        name: artifact_bytes(repository / name / "1" / spec["file"]) / MIB
        for name, spec in manifest["engines"].items()
    }
    at_start = model_memory_mib(server.pid, repository)
    memory = {}
    with VHSClient(server.grpc_url) as client:
        for mode in memory_order(modes):
            for seed, prompt in enumerate(prompts[:MEMORY_REQUESTS]):
                client.generate(prompt, PAPER_N, seed, mode)
            peaks = model_memory_mib(server.pid, repository)
            engines = MODES[mode].engines
            peak = {e: peaks.get(e, {}).get("peak_rss_mib", math.nan) for e in engines}
            growth = {e: peak[e] - at_start.get(e, {}).get("rss_mib", math.nan) for e in engines}
            memory[mode] = {
                "memory_mib": sum(weights_mib[e] + growth[e] for e in engines),
                "stubs_peak_rss_mib": sum(peak.values()),
            }
    return memory


def measure_latency(server: TritonServer, repository: Path, grid: Grid, prompts: Sequence[str]) -> dict:
    """{(runner, N): median ms}, runners `served <mode>` and `in-process <mode>`, interleaved."""
    pipeline = InProcessPipeline(repository)
    with VHSClient(server.grpc_url) as client:
        runners = {}
        for mode in grid.modes:
            runners[f"served {mode}"] = lambda prompt, n, mode=mode: client.generate(prompt, n, 0, mode)
            runners[f"in-process {mode}"] = lambda prompt, n, mode=mode: pipeline(prompt, n, 0, mode)
        for run in runners.values():  # warm-up: lazy initialisation stays out of the figures
            run(prompts[0], max(grid.candidates))
        return measure(runners, grid.candidates, repeats=1, prompts=prompts[: grid.latency_prompts])


def perf_cell(
    server: TritonServer, mode: str, n: int, concurrency: int, grid: Grid, folder: Path, build_dir: Path
) -> dict:
    """One perf_analyzer run: {mode, num_candidates, stable, row (its CSV row), composing (engine stats)}."""
    name = f"{mode}_n{n}_c{concurrency}"
    data_path = folder / "input_data" / f"{mode}_n{n}.json"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_text(json.dumps(variant(mode, n)))
    arguments = dict(
        concurrency_range=str(concurrency),
        input_data=data_path,
        bls_composing_models=MODES[mode].engines,
        measurement_interval_ms=grid.measurement_interval_ms,
        report_csv=folder / "perf_analyzer" / f"{name}.csv",
        build_dir=build_dir,
        timeout_s=600,
    )
    stable = True
    try:
        report = run_perf_analyzer(P.ORCHESTRATOR_MODEL, server.grpc_url, extra_args=STABILITY, **arguments)
    except PerfAnalyzerError:
        stable = False
        count = f"--request-count={UNSTABLE_REQUESTS_PER_CLIENT * concurrency}"
        report = run_perf_analyzer(P.ORCHESTRATOR_MODEL, server.grpc_url, extra_args=[count], **arguments)
        # Over a request count perf_analyzer's throughput is counted in whole seconds (64 requests
        # read 16.0, 21.3, 32.0 or 64/s); a closed loop of `concurrency` clients serves
        # concurrency / average latency.
        report.rows[0]["Inferences/Second"] = concurrency * 1e6 / average_latency_us(report.rows[0])
    (folder / "perf_analyzer" / f"{name}.txt").write_text(report.output)
    return {
        "mode": mode,
        "num_candidates": n,
        "stable": stable,
        "row": report.rows[0],
        "composing": report.composing_models.get(float(concurrency), {}),
    }


def bench_preset(preset: str, repository: Path, grid: Grid, folder: Path, build_dir: Path) -> dict:
    """Every measurement of one preset; writes its CSVs under `folder` and returns the figures."""
    from benchmarks.flops import engine_flops
    from vhs.presets import load_preset

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "perf_analyzer").mkdir(exist_ok=True)
    prompts = shipped_prompts()
    started = time.perf_counter()
    with TritonServer(repository, build_dir=build_dir) as server:
        print(f"[{preset}] server ready; memory per mode", flush=True)
        mode_memory = measure_mode_memory(server, repository, grid.modes, prompts)
        print(f"[{preset}] served vs in-process, interleaved", flush=True)
        latency = measure_latency(server, repository, grid, prompts)
        cells = []
        coordinates = [(n, c, m) for n in grid.candidates for c in grid.concurrencies for m in grid.modes]
        for index, (n, concurrency, mode) in enumerate(coordinates, 1):
            cell = perf_cell(server, mode, n, concurrency, grid, folder, build_dir)
            cells.append(cell)
            row = cell["row"]
            print(
                f"[{preset}] perf {index}/{len(coordinates)}: {mode} N={n} c={concurrency}: "
                f"{row['Inferences/Second']:.2f} infer/s, p50 {row['p50 latency'] / 1e3:.1f} ms"
                + ("" if cell["stable"] else " (unstable)"),
                flush=True,
            )
        engine_memory = model_memory_mib(server.pid, repository)
    per_row_flops = engine_flops(load_preset(preset))
    figures = {
        "preset": preset,
        "grid": grid,
        "mode_memory": mode_memory,
        "latency": latency,
        "cells": cells,
        "engine_memory": engine_memory,
        "flops": per_row_flops,
        "seconds": time.perf_counter() - started,
    }
    write_preset_csvs(figures, folder)
    return figures


def write_preset_csvs(figures: dict, folder: Path) -> None:
    """perf.csv, stage_split.csv, latency.csv, memory.csv, flops.csv of one preset."""
    from benchmarks.flops import request_flops

    cells = figures["cells"]
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
        folder / "latency.csv",
        [
            {"runner": runner, "num_candidates": n, "median_ms": ms}
            for (runner, n), ms in sorted(figures["latency"].items())
        ],
    )
    write_csv(folder / "mode_memory.csv", [{"mode": m, **v} for m, v in figures["mode_memory"].items()])
    write_csv(
        folder / "memory.csv",
        [{"model": model, **values} for model, values in sorted(figures["engine_memory"].items())],
    )
    grid = figures["grid"]
    write_csv(
        folder / "flops.csv",
        [{"engine": engine, "flops_per_row": flops} for engine, flops in figures["flops"].items()]
        + [
            {"engine": f"request {mode} N={n}", "flops_per_row": request_flops(figures["flops"], mode, n)}
            for mode in grid.modes
            for n in grid.candidates
        ],
    )


def cell(figures: dict, mode: str, n: int, concurrency: int) -> dict:
    """The perf cell at these coordinates."""
    return next(
        c
        for c in figures["cells"]
        if c["mode"] == mode and c["num_candidates"] == n and c["row"]["Concurrency"] == concurrency
    )


def split_at(figures: dict, mode: str, n: int, concurrency: int) -> list[dict]:
    """The stage split of the perf cell at these coordinates."""
    found = cell(figures, mode, n, concurrency)
    return stage_split(found["row"], found["composing"])


def preset_tables(figures: dict) -> tuple[list[dict], list[Ratio]]:
    """(the paper's table rows, the ratios) of one preset at N = PAPER_N."""
    from benchmarks.flops import request_flops

    preset, latency, flops = figures["preset"], figures["latency"], figures["flops"]
    modes = figures["grid"].modes
    mode_figures = {
        mode: ModeFigures(
            latency[(f"served {mode}", PAPER_N)],
            request_flops(flops, mode, PAPER_N),
            figures["mode_memory"][mode]["memory_mib"],
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


def grid_markdown(figures: dict) -> str:
    """Throughput (infer/s) and p50 latency (ms) of every cell: a row per mode and N, a column per
    concurrency."""
    grid = figures["grid"]
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


def latency_markdown(figures: dict) -> str:
    """Median served and in-process request time (ms) per mode and N, concurrency 1."""
    grid, latency = figures["grid"], figures["latency"]
    header = ["N", *(f"served {m}" for m in grid.modes), *(f"in-process {m}" for m in grid.modes)]
    rows = [
        [n, *(f"{latency[(f'{kind} {m}', n)]:.1f}" for kind in ("served", "in-process") for m in grid.modes)]
        for n in grid.candidates
    ]
    return markdown_table(header, rows)


def split_markdown(figures: dict, n: int = PAPER_N) -> str:
    """The stage split at concurrency 1: compute / overhead ms of each stage, a column per mode."""
    modes = figures["grid"].modes
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


def memory_markdown(figures: dict) -> str:
    """Each model's stubs, RSS and peak RSS after the grid (device memory where reported)."""
    memory = figures["engine_memory"]
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


def flops_markdown(figures: dict) -> str:
    """MFLOP per row of each engine and per request of each mode at N = PAPER_N."""
    from benchmarks.flops import request_flops

    flops = figures["flops"]
    rows = [[engine, f"{value / 1e6:,.2f}"] for engine, value in flops.items()]
    rows += [
        [f"request {mode}, N = {PAPER_N}", f"{request_flops(flops, mode, PAPER_N) / 1e6:,.2f}"]
        for mode in figures["grid"].modes
    ]
    return markdown_table(["engine (per row) / request", "MFLOP"], rows)


def write_report(results: list[dict], output: Path, machine: str) -> str:
    """bench.md, paper_table.csv, ratios.csv and the plots; returns the Markdown."""
    sections = [f"# make bench\n\nMachine: {machine}. One run; compare ratios, not milliseconds.\n"]
    paper_rows, all_ratios = [], []
    for figures in results:
        preset = figures["preset"]
        paper, ratios = preset_tables(figures)
        paper_rows += [{"preset": preset, **row} for row in paper]
        all_ratios += ratios
        sections += [
            f"## {preset} ({figures['seconds']:.0f} s)",
            f"### The paper's table (N = {PAPER_N}, concurrency 1, served)\n\n{paper_markdown(paper)}",
            f"### Ratios\n\n{ratio_markdown(ratios)}",
            f"### perf_analyzer grid (`*`: not stable within 30 %)\n\n{grid_markdown(figures)}",
            f"### Served vs in-process (median ms, concurrency 1)\n\n{latency_markdown(figures)}",
            f"### Stage split (N = {PAPER_N}, concurrency 1)\n\n{split_markdown(figures)}",
            f"### Memory after the grid\n\n{memory_markdown(figures)}",
            f"### FLOPs\n\n{flops_markdown(figures)}",
        ]
        plots.throughput(figures, output / f"{preset}_throughput.png")
        plots.latency(figures, output / f"{preset}_latency.png")
        plots.stage_split(figures, output / f"{preset}_stage_split.png", PAPER_N)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["shapes"], help="each needs <build>/<preset>/model_repository"
    )
    parser.add_argument(
        "--build", type=Path, default=Path("build"), help="where `make export` wrote the presets"
    )
    parser.add_argument("--quick", action="store_true", help="the reduced grid of make bench-quick")
    parser.add_argument("--output", type=Path, default=Path("out/bench"))
    parser.add_argument("--machine", default="2-core CPU development machine, no GPU, shared with other jobs")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    results = []
    for index, preset in enumerate(args.presets):
        grid = QUICK if args.quick else FULL if index == 0 else SECONDARY
        if args.quick and index > 0:
            grid = replace(SECONDARY, measurement_interval_ms=QUICK.measurement_interval_ms)
        repository = args.build / preset / "model_repository"
        results.append(bench_preset(preset, repository, grid, args.output / preset, args.build / "triton"))
    print(write_report(results, args.output, args.machine))
    print(f"wrote {args.output}/bench.md, paper_table.csv, ratios.csv, <preset>/*.csv and the plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
