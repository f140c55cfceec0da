"""The PNG plots of `make bench` (matplotlib, Agg): throughput, request time, stage split, per preset.

`throughput` and `latency` take one preset's figures (`benchmarks.bench_tables.PresetFigures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

if TYPE_CHECKING:
    from .bench_tables import PresetFigures


def _cells(figures: PresetFigures, mode: str, n: int) -> list[dict]:
    found = [c for c in figures.cells if c["mode"] == mode and c["num_candidates"] == n]
    return sorted(found, key=lambda c: c["row"]["Concurrency"])


def throughput(figures: PresetFigures, path: Path) -> None:
    """Requests per second against concurrency, one panel per N, one line per mode."""
    grid = figures.grid
    panels, axes = plt.subplots(
        1, len(grid.candidates), figsize=(3.2 * len(grid.candidates), 3.2), squeeze=False
    )
    for axis, n in zip(axes[0], grid.candidates, strict=True):
        for mode in grid.modes:
            cells = _cells(figures, mode, n)
            axis.plot(
                [c["row"]["Concurrency"] for c in cells],
                [c["row"]["Inferences/Second"] for c in cells],
                marker="o",
                label=mode,
            )
        axis.set_title(f"N = {n}")
        axis.set_xlabel("concurrency")
        axis.set_xscale("log", base=2)
    axes[0][0].set_ylabel("requests / s (perf_analyzer)")
    axes[0][-1].legend()
    panels.suptitle(f"{figures.preset}: throughput")
    _save(panels, path)


def latency(figures: PresetFigures, path: Path) -> None:
    """Median request time against N at concurrency 1: served (solid) and in-process (dashed)."""
    grid, medians = figures.grid, figures.latency
    figure, axis = plt.subplots(figsize=(6, 4))
    for mode in grid.modes:
        (line,) = axis.plot(
            grid.candidates,
            [medians[(f"served {mode}", n)] for n in grid.candidates],
            marker="o",
            label=f"served {mode}",
        )
        axis.plot(
            grid.candidates,
            [medians[(f"in-process {mode}", n)] for n in grid.candidates],
            linestyle="--",
            color=line.get_color(),
            label=f"in-process {mode}",
        )
    axis.set_xlabel("candidates N")
    axis.set_ylabel("median request time (ms)")
    axis.set_title(f"{figures.preset}: served vs in-process ONNX Runtime, concurrency 1")
    axis.legend(fontsize="small", ncol=2)
    _save(figure, path)


def stage_split(splits: dict[str, list[dict]], title: str, path: Path) -> None:
    """Stacked bars, one per mode: each stage's compute (solid) and overhead (hatched).

    splits: {mode: stages as `benchmarks.report.stage_split` returns them}.
    """
    figure, axis = plt.subplots(figsize=(7, 4))
    colors: dict[str, object] = {}
    for x, stages in enumerate(splits.values()):
        bottom = 0.0
        for stage in stages:
            first_seen = stage["stage"] not in colors
            color = colors.setdefault(stage["stage"], f"C{len(colors) % 10}")
            for part, hatch in (("compute_ms", None), ("overhead_ms", "//")):
                height = max(stage[part], 0.0)
                label = stage["stage"] if part == "compute_ms" and first_seen else None
                axis.bar(x, height, bottom=bottom, color=color, hatch=hatch, edgecolor="white", label=label)
                bottom += height
    axis.set_xticks(range(len(splits)), list(splits))
    axis.set_ylabel("ms per request (hatched: overhead)")
    axis.set_title(title)
    handles, labels = axis.get_legend_handles_labels()
    axis.legend(handles, labels, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
