"""Run Triton's `perf_analyzer` (from `tritonclient[all]==2.51.0`, installed in the venv's bin/).

The binary needs `libb64.so.0d` and `libcudart.so.12`. Both ship inside the `nvidia-pytriton` wheel
under hashed names (`libb64-<hash>.so.0d`, `libcudart-<hash>.so.12.x.y`), so
`<build_dir>/perf_analyzer_libs/` holds symlinks with the plain names and goes on LD_LIBRARY_PATH.

    report = run_perf_analyzer("vhs", server.grpc_url, concurrency_range="1:8:1",
                               input_data="prompts.json", bls_composing_models=["dit_prefix", "llm"])
    report.rows[0]["Inferences/Second"], report.rows[0]["p99 latency"]  # microseconds
    report.composing_models[1.0]["llm"]["compute_infer_us"]  # per-engine server time at concurrency 1

The `-f` CSV holds one row per concurrency (written sorted by throughput, re-sorted here by
concurrency) but no per-composing-model times: those only appear in perf_analyzer's stdout and are
parsed from there.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vhs.launcher.install import DEFAULT_BUILD_DIR, TritonInstallError, pytriton_paths

LIBS_DIR_NAME = "perf_analyzer_libs"
# plain soname perf_analyzer links against -> glob of the hashed copy inside nvidia_pytriton.libs
WHEEL_LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
PROTOCOLS = ("grpc", "http")
OUTPUT_TAIL_CHARS = 4000


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing or failed; the message carries the end of its output."""


@dataclass
class PerfAnalyzerReport:
    """What one perf_analyzer run measured.

    rows: the `-f` CSV, one dict per load level (`Concurrency`, `Inferences/Second`, `Client Send`,
        `Server Queue`, `Server Compute Infer`, `p50 latency`, ... times in microseconds), numeric
        cells as floats, sorted by the load level (first column).
    composing_models: {load level: {model: {stat: value}}} for the `--bls-composing-models`, stats
        `request_latency_us`, `overhead_us`, `queue_us`, `compute_input_us`, `compute_infer_us`,
        `compute_output_us`, `inference_count`, `execution_count`, `successful_request_count`.
    output: perf_analyzer's stdout.
    """

    rows: list[dict[str, float | str]]
    composing_models: dict[float, dict[str, dict[str, float]]]
    output: str


def perf_analyzer_command(build_dir: str | Path = DEFAULT_BUILD_DIR) -> tuple[Path, dict[str, str]]:
    """(path of the perf_analyzer binary, environment to run it with).

    Prefers the venv's binary; falls back to one on PATH (e.g. the Triton SDK container). When the
    nvidia-pytriton wheel is installed, its libraries are linked under plain names into
    `<build_dir>/perf_analyzer_libs/` (idempotent) and that folder goes first on LD_LIBRARY_PATH.
    """
    venv_binary = Path(sys.executable).parent / "perf_analyzer"
    found = str(venv_binary) if venv_binary.is_file() else shutil.which("perf_analyzer")
    if found is None:
        raise PerfAnalyzerError("perf_analyzer not found: pip install 'tritonclient[all]==2.51.0'")
    env = dict(os.environ)
    try:
        _, wheel_libs_dir = pytriton_paths()
    except TritonInstallError:  # no nvidia-pytriton: a system perf_analyzer brings its own libraries
        return Path(found), env
    libs_dir = _link_wheel_libraries(wheel_libs_dir, Path(build_dir).resolve() / LIBS_DIR_NAME)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        part for part in (str(libs_dir), env.get("LD_LIBRARY_PATH", "")) if part
    )
    return Path(found), env


def _link_wheel_libraries(wheel_libs_dir: Path, libs_dir: Path) -> Path:
    libs_dir.mkdir(parents=True, exist_ok=True)
    for plain_name, pattern in WHEEL_LIBRARIES.items():
        matches = sorted(wheel_libs_dir.glob(pattern))
        if not matches:
            raise PerfAnalyzerError(f"no {pattern} in {wheel_libs_dir}: is nvidia-pytriton==0.7.0 installed?")
        link = libs_dir / plain_name
        if link.is_symlink() and link.resolve() == matches[0].resolve():
            continue
        staged = libs_dir / f"{plain_name}.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(matches[0])
        os.replace(staged, link)  # atomic: concurrent callers never see a missing library
    return libs_dir


def run_perf_analyzer(
    model: str,
    url: str,
    *,
    protocol: str = "grpc",
    concurrency_range: str = "1",
    input_data: str | Path | None = None,
    bls_composing_models: Sequence[str] = (),
    measurement_interval_ms: int | None = None,
    extra_args: Sequence[str] = (),
    report_csv: str | Path | None = None,
    build_dir: str | Path = DEFAULT_BUILD_DIR,
    timeout_s: float | None = None,
) -> PerfAnalyzerReport:
    """Run perf_analyzer against `model` at `url` (`host:port`) and return what it measured.

    concurrency_range: perf_analyzer's `start:end:step` (or one value).
    input_data: a JSON file in perf_analyzer's `--input-data` format (e.g. BYTES input PROMPT).
    bls_composing_models: models the BLS model calls, so their server-side times are reported too.
    extra_args: passed through unchanged (e.g. `--percentile=99`, `--request-count=100`).
    report_csv: where perf_analyzer's `-f` CSV is kept (default: a temporary file, removed).
    Raises PerfAnalyzerError with the end of perf_analyzer's output when it exits non-zero.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    binary, env = perf_analyzer_command(build_dir)
    with tempfile.TemporaryDirectory(prefix="perf_analyzer-") as report_dir:
        report_path = Path(report_csv) if report_csv is not None else Path(report_dir) / "report.csv"
        report_path.unlink(missing_ok=True)  # a file left by an earlier run must not pass for this one's
        command = [
            str(binary),
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            f"--concurrency-range={concurrency_range}",
            "-f",
            str(report_path),
        ]
        if input_data is not None:
            command.append(f"--input-data={input_data}")
        if bls_composing_models:
            command.append(f"--bls-composing-models={','.join(bls_composing_models)}")
        if measurement_interval_ms is not None:
            command.append(f"--measurement-interval={measurement_interval_ms}")
        command += list(extra_args)
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if completed.returncode != 0 or not report_path.is_file():
            output = (completed.stdout + completed.stderr)[-OUTPUT_TAIL_CHARS:]
            raise PerfAnalyzerError(
                f"perf_analyzer exited with code {completed.returncode}: {' '.join(command)}\n{output}"
            )
        return PerfAnalyzerReport(
            parse_csv_report(report_path.read_text()),
            parse_composing_models(completed.stdout),
            completed.stdout,
        )


def parse_csv_report(text: str) -> list[dict[str, float | str]]:
    """perf_analyzer's `-f` CSV -> one dict per row, numeric cells as floats, sorted by load level."""
    return sorted(parse_csv_rows(text), key=lambda row: next(iter(row.values())))


def parse_csv_rows(text: str) -> list[dict[str, float | str]]:
    """A CSV with a header -> one dict per row in file order, numeric cells as floats."""
    return [
        {key: _number_or_text(value) for key, value in row.items()}
        for row in csv.DictReader(text.splitlines())
    ]


LOAD_LEVEL_LINE = re.compile(r"Request (?:concurrency|Rate): ([\d.]+)")
MODEL_LINE = re.compile(r"(\S+), version: \S*$")
COUNT_LINE = re.compile(r"(Inference count|Execution count|Successful request count): (\d+)")
LATENCY_LINE = re.compile(r"Avg request latency: (\d+) usec \((.*)\)")
LATENCY_PART = re.compile(r"([a-z ]+?) (\d+) usec")


def parse_composing_models(output: str) -> dict[float, dict[str, dict[str, float]]]:
    """The `Composing models:` sections of perf_analyzer's stdout -> {load level: {model: {stat: value}}}."""
    stats: dict[float, dict[str, dict[str, float]]] = {}
    load_level, model_stats, in_composing = None, None, False
    for line in output.splitlines():
        text = line.strip()
        if match := LOAD_LEVEL_LINE.match(text):
            load_level, model_stats, in_composing = float(match[1]), None, False
        elif text == "Composing models:":
            in_composing = True
        elif in_composing and (match := MODEL_LINE.match(text)):
            model_stats = stats.setdefault(load_level, {}).setdefault(match[1], {})
        elif model_stats is not None and (match := COUNT_LINE.match(text)):
            model_stats[_stat_name(match[1])] = float(match[2])
        elif model_stats is not None and (match := LATENCY_LINE.match(text)):
            model_stats["request_latency_us"] = float(match[1])
            for part, value in LATENCY_PART.findall(match[2]):
                model_stats[f"{_stat_name(part)}_us"] = float(value)
    return stats


def _stat_name(label: str) -> str:
    return label.strip().lower().replace(" ", "_")


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
