"""The PNG plots of `make bench` (matplotlib, Agg): throughput, request time, stage split, per preset.

Plain data in, one PNG out: the tables module (`vhs.benchmarks.bench_tables`) calls these, never the
other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def _cells(cells: list[dict], mode: str, n: int) -> list[dict]:
    found = [c for c in cells if c["mode"] == mode and c["num_candidates"] == n]
    return sorted(found, key=lambda c: c["row"]["Concurrency"])


def throughput(
    preset: str, modes: Sequence[str], candidates: Sequence[int], cells: list[dict], path: Path
) -> None:
    """Requests per second against concurrency, one panel per N, one line per mode.

    cells: one dict per perf_analyzer run (mode, num_candidates, row: its CSV row).
    """
    panels, axes = plt.subplots(1, len(candidates), figsize=(3.2 * len(candidates), 3.2), squeeze=False)
    for axis, n in zip(axes[0], candidates, strict=True):
        for mode in modes:
            cells_at_n = _cells(cells, mode, n)
            axis.plot(
                [c["row"]["Concurrency"] for c in cells_at_n],
                [c["row"]["Inferences/Second"] for c in cells_at_n],
                marker="o",
                label=mode,
            )
        axis.set_title(f"N = {n}")
        axis.set_xlabel("concurrency")
        axis.set_xscale("log", base=2)
    axes[0][0].set_ylabel("requests / s (perf_analyzer)")
    axes[0][-1].legend()
    panels.suptitle(f"{preset}: throughput")
    _save(panels, path)


def latency(
    preset: str,
    modes: Sequence[str],
    candidates: Sequence[int],
    medians: dict[tuple[str, int], float],
    path: Path,
) -> None:
    """Median request time against N at concurrency 1: served (solid) and in-process (dashed).

    medians: {("served <mode>" | "in-process <mode>", N): median ms}.
    """
    figure, axis = plt.subplots(figsize=(6, 4))
    for mode in modes:
        (line,) = axis.plot(
            candidates,
            [medians[(f"served {mode}", n)] for n in candidates],
            marker="o",
            label=f"served {mode}",
        )
        axis.plot(
            candidates,
            [medians[(f"in-process {mode}", n)] for n in candidates],
            linestyle="--",
            color=line.get_color(),
            label=f"in-process {mode}",
        )
    axis.set_xlabel("candidates N")
    axis.set_ylabel("median request time (ms)")
    axis.set_title(f"{preset}: served vs in-process ONNX Runtime, concurrency 1")
    axis.legend(fontsize="small", ncol=2)
    _save(figure, path)


def stage_split(splits: dict[str, list[dict]], title: str, path: Path) -> None:
    """Stacked bars, one per mode: each stage's compute (solid) and overhead (hatched).

    splits: {mode: stages as `vhs.benchmarks.report.stage_split` returns them}.
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
