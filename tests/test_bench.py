"""The parts of `make bench` that can be wrong without a long run: the shipped perf_analyzer input
data, perf_analyzer's CSV, the stage split, the paper's table and ratios on fixed figures, the
per-mode engine rows behind FLOPs and memory, and the in-process ONNX Runtime pipeline."""

from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from vhs import protocol as P
from vhs.benchmarks.bench import memory_order
from vhs.benchmarks.bench_tables import Grid, PresetFigures, write_report
from vhs.benchmarks.input_data import (
    SHIPPED_FILE,
    evaluation_prompt_texts,
    input_data,
    shipped_prompts,
    variant,
)
from vhs.benchmarks.memory import process_memory_mib
from vhs.benchmarks.perf_analyzer import parse_csv_report
from vhs.benchmarks.report import (
    ENGINE_COMPUTE,
    ModeFigures,
    Ratio,
    average_latency_us,
    overhead_reason,
    paper_table,
    ratio_markdown,
    stage_split,
    with_engine_compute,
)
from vhs.export.repository import orchestrator_config
from vhs.modes import MODES, mode_names

# perf_analyzer 2.51's `-f` CSV (rows written by throughput, not by concurrency).
PERF_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
2,35.9,40,1500,300,60,52000,40,20,55000,60000,70000,76100
1,24.8,9,1400,100,50,38000,30,11,38700,45000,47000,49200
"""


def test_shipped_input_data_is_built_from_the_evaluation_prompts():
    import json

    assert json.loads(SHIPPED_FILE.read_text()) == input_data(evaluation_prompt_texts(), "vhs", 4), (
        "regenerate with: python -m vhs.benchmarks.input_data"
    )


def test_shipped_input_data_fits_the_vhs_model_inputs():
    """Every entry names only inputs of the `vhs` config, each with [1] value of the config's type."""
    import json

    config = orchestrator_config([64, 64, 3], instances=1)
    python_types = {mc.TYPE_STRING: str, mc.TYPE_INT32: int, mc.TYPE_INT64: int}
    inputs = {item.name: item for item in config.input}
    entries = json.loads(SHIPPED_FILE.read_text())["data"]
    assert len(entries) >= 40
    for entry in entries:
        assert set(entry) <= set(inputs)
        assert {name for name, item in inputs.items() if not item.optional} <= set(entry)
        for name, values in entry.items():
            assert list(inputs[name].dims) == [len(values)] == [1]
            assert type(values[0]) is python_types[inputs[name].data_type], (name, values)
        assert 0 <= entry[P.SEED][0] < 2**31
        assert entry[P.MODE][0] in mode_names()


@pytest.mark.parametrize(  # make bench's BENCH_PRESETS
    "preset_name", ["shapes", pytest.param("proportions", marks=pytest.mark.slow)]
)
def test_shipped_prompts_pass_request_validation_of_the_bench_presets(preset_name, request):
    """perf_analyzer would count INVALID_ARG answers as failed requests: every prompt must be valid."""
    from vhs.presets import load_preset
    from vhs.request import parse_request

    if preset_name == "proportions":
        request.getfixturevalue("built_proportions")
    preset = load_preset(preset_name)
    for prompt in shipped_prompts():
        for mode in preset.config.modes:
            parse_request(preset.config, preset.prompt_tokenizer, prompt, 8, 0, mode)


def test_variant_changes_only_mode_and_candidates():
    clip = variant("clip", 8)["data"]
    assert [e[P.PROMPT] for e in clip] == [[p] for p in shipped_prompts()]
    assert {e[P.MODE][0] for e in clip} == {"clip"} and {e[P.NUM_CANDIDATES][0] for e in clip} == {8}
    assert [e[P.SEED][0] for e in clip] == list(range(len(clip)))


def test_perf_analyzer_csv_is_parsed_and_sorted_by_concurrency():
    rows = parse_csv_report(PERF_CSV)
    assert [row["Concurrency"] for row in rows] == [1.0, 2.0]
    assert rows[0]["Inferences/Second"] == 24.8 and rows[1]["p99 latency"] == 76100.0


def test_stage_split_accounts_for_the_whole_round_trip():
    row = parse_csv_report(PERF_CSV)[0]  # concurrency 1: server 38180 us, client and network 1420 us
    composing = {
        "dit_prefix": {"request_latency_us": 9000.0, "compute_infer_us": 7000.0},
        "llm": {"request_latency_us": 11000.0, "compute_infer_us": 10000.0},
    }
    stages = {s["stage"]: s for s in stage_split(row, composing)}
    assert stages["dit_prefix"]["compute_ms"] == 7.0 and stages["dit_prefix"]["overhead_ms"] == 2.0
    assert stages["orchestrator"]["compute_ms"] == 0.0
    assert stages["orchestrator"]["overhead_ms"] == pytest.approx(38.18 - 20.0)
    assert stages["client + gRPC"]["overhead_ms"] == pytest.approx(1.42)
    total = sum(s["total_ms"] for s in stages.values())
    assert total == pytest.approx(average_latency_us(row) / 1e3) == pytest.approx(39.6)
    reason = overhead_reason({"vhs": list(stages.values())})
    assert reason == "overhead, not engine compute: vhs 57% (22.6 of 39.6 ms)"


def test_stage_split_takes_the_engines_own_compute_where_reported():
    """An engine's own ONNX Runtime time (benchmarks/engine_compute.py) is its compute; the stub's
    exchange and batching around it join the overhead. Without it, Triton's compute infer counts."""
    row = parse_csv_report(PERF_CSV)[0]
    composing = with_engine_compute(
        {
            "dit_prefix": {"request_latency_us": 9000.0, "compute_infer_us": 7000.0},
            "llm": {"request_latency_us": 11000.0, "compute_infer_us": 10000.0},
        },
        {"dit_prefix": 6000.0, "vae_decoder": 1.0},  # an engine outside the cell is not added
    )
    assert set(composing) == {"dit_prefix", "llm"} and ENGINE_COMPUTE not in composing["llm"]
    stages = {s["stage"]: s for s in stage_split(row, composing)}
    assert stages["dit_prefix"]["compute_ms"] == 6.0 and stages["dit_prefix"]["overhead_ms"] == 3.0
    assert stages["llm"]["compute_ms"] == 10.0 and stages["llm"]["overhead_ms"] == 1.0


def test_paper_table_savings_are_against_the_clip_verifier():
    figures = {
        "clip": ModeFigures(time_ms=100.0, flops=4e9, memory_mib=200.0),
        "vhs": ModeFigures(time_ms=40.0, flops=2e9, memory_mib=170.0),
        "latent": ModeFigures(time_ms=80.0, flops=3e9, memory_mib=180.0),
    }
    rows = {row["mode"]: row for row in paper_table(figures)}
    assert [row["mode"] for row in paper_table(figures)] == ["vhs", "clip", "latent"]  # mode table order
    assert rows["vhs"]["time_saving"] == pytest.approx(0.6)
    assert rows["vhs"]["flop_saving"] == pytest.approx(0.5)
    assert rows["vhs"]["memory_saving"] == pytest.approx(0.15)
    assert rows["latent"]["time_saving"] == pytest.approx(0.2)
    assert rows["clip"]["time_saving"] == 0.0 and rows["clip"]["gflop"] == 4.0


def test_ratio_target_direction_and_reason_only_when_missed():
    time_missed = Ratio("vhs / clip time", 0.61, 0.50, 0.405, reason="overhead 20 of 40 ms")
    throughput_met = Ratio("vhs / clip throughput", 2.1, 2.0, 2.47, lower_is_better=False, reason="unused")
    no_target = Ratio("vhs / none time", 1.7, None, 1.73)
    assert (time_missed.met, throughput_met.met, no_target.met) == (False, True, None)
    table = ratio_markdown([time_missed, throughput_met, no_target]).splitlines()
    assert table[2] == "| vhs / clip time | 0.610 | <= 0.50 | 0.41 | no | overhead 20 of 40 ms |"
    assert table[3] == "| vhs / clip throughput | 2.100 | >= 2.00 | 2.47 | yes |  |"
    assert table[4] == "| vhs / none time | 1.700 | - | 1.73 | - |  |"


def test_engine_rows_follow_the_mode_table():
    assert MODES["vhs"].engine_rows(4) == {
        "text_encoder": 1, "dit_prefix": 4, "connector": 4, "llm": 4, "dit_suffix": 1, "vae_decoder": 1,
    }  # fmt: skip
    assert MODES["clip"].engine_rows(4)["vae_decoder"] == 4
    assert set(MODES["none"].engine_rows(8).values()) == {1}


def test_memory_order_never_shrinks_an_engine_batch():
    order = memory_order(mode_names())
    assert order == ["none", "vhs", "latent", "clip"]
    for earlier, later in zip(order, order[1:], strict=False):
        for engine, rows in MODES[earlier].engine_rows(8).items():
            assert MODES[later].engine_rows(8).get(engine, rows) >= rows, (earlier, later, engine)


def test_request_flops_weights_each_engine_by_its_rows():
    from vhs.benchmarks.flops import request_flops

    per_row = {engine: 1.0 for mode in MODES.values() for engine in mode.engines}
    per_row["dit_prefix"] = 10.0
    assert request_flops(per_row, "vhs", 4) == 1 + 40 + 4 + 4 + 1 + 1
    assert request_flops(per_row, "none", 4) == 1 + 10 + 1 + 1


def test_process_memory_reads_resident_and_peak():
    memory = process_memory_mib(__import__("os").getpid())
    assert 0 < memory["rss_mib"] <= memory["peak_rss_mib"]


def fake_figures(preset: str) -> PresetFigures:
    """Figures of a preset as bench_preset returns them, with made-up numbers."""
    grid = Grid(candidates=(1, 4), concurrencies=(1, 4), measurement_interval_ms=1, latency_prompts=1)
    cost = {"none": 1.0, "vhs": 2.0, "latent": 3.0, "clip": 4.0}
    cells = []
    for mode in grid.modes:
        for n in grid.candidates:
            for c in grid.concurrencies:
                latency_us = 10_000 * cost[mode] * n
                row = dict(parse_csv_report(PERF_CSV)[0], Concurrency=float(c))
                row["Inferences/Second"] = c * 1e6 / latency_us
                composing = {
                    e: {"request_latency_us": 1000.0, "compute_infer_us": 800.0} for e in MODES[mode].engines
                }
                composing["dit_prefix"][ENGINE_COMPUTE] = 600.0  # reported by the engine itself
                cells.append(
                    {"mode": mode, "num_candidates": n, "stable": c == 1, "row": row, "composing": composing}
                )
    latency = {(f"{kind} {m}", n): cost[m] * n * (1.05 if kind == "served" else 1.0)
               for kind in ("served", "in-process") for m in grid.modes for n in grid.candidates}  # fmt: skip
    return PresetFigures(
        preset=preset,
        grid=grid,
        mode_memory={m: {"memory_mib": 100 * cost[m], "stubs_peak_rss_mib": 500.0} for m in grid.modes},
        latency=latency,
        cells=cells,
        engine_memory={"llm": {"stubs": 1.0, "rss_mib": 90.0, "peak_rss_mib": 95.0}},
        flops={e: 1e6 for mode in MODES.values() for e in mode.engines},
        seconds=1.0,
        load_average=(0.5, 1.5),
    )


def test_report_from_fixed_figures(tmp_path: Path):
    markdown = write_report([fake_figures("shapes")], tmp_path, "test machine")
    assert "| vhs | 8.4 | 50.0% (paper 63.3%)" in markdown  # 2 x 4 x 1.05 ms against 4 x 4 x 1.05
    assert (
        "| shapes: served / in-process vhs, N = 4, concurrency 1 | 1.050 | <= 1.15 | 1.00 | yes |" in markdown
    )
    assert "| vhs | 4 | 12.5 (39) | 50.0 (39)* |" in markdown  # c = 4 marked unstable
    for name in (
        "bench.md",
        "paper_table.csv",
        "ratios.csv",
        "shapes_throughput.png",
        "shapes_stage_split.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


@pytest.fixture(scope="module")
def in_process(exported_tiny):
    from vhs.benchmarks.in_process import InProcessPipeline

    return InProcessPipeline(exported_tiny / "model_repository")


@pytest.mark.parametrize("mode", mode_names())
def test_in_process_pipeline_equals_reference(in_process, tiny_pipeline, mode):
    ours = in_process("a photo of a red circle", 3, 5, mode)
    reference = tiny_pipeline("a photo of a red circle", 3, 5, mode)
    assert ours.selected == reference.selected
    np.testing.assert_allclose(ours.scores, reference.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.image.astype(int), reference.image.astype(int), atol=1)


def test_report_is_rewritten_from_the_files_of_a_run(tmp_path: Path):
    """`--report-only` reads back what a run wrote (the CSVs and each cell's perf_analyzer stdout)."""
    from vhs.benchmarks.bench_tables import read_preset_figures, write_preset_csvs

    figures = fake_figures("shapes")
    folder = tmp_path / "shapes"
    (folder / "perf_analyzer").mkdir(parents=True)
    write_preset_csvs(figures, folder)
    for c in figures.cells:  # perf_analyzer's stdout, as far as parse_composing_models reads it
        concurrency = int(c["row"]["Concurrency"])
        lines = [f"Request concurrency: {concurrency}", "  Composing models:"]
        for engine, stats in c["composing"].items():
            lines += [
                f"  {engine}, version: 1",
                f"      Avg request latency: {stats['request_latency_us']:.0f} usec (overhead 200 usec + "
                f"compute infer {stats['compute_infer_us']:.0f} usec)",
            ]
        name = f"{c['mode']}_n{c['num_candidates']}_c{concurrency}.txt"
        (folder / "perf_analyzer" / name).write_text("\n".join(lines) + "\n")
    again = read_preset_figures(folder)
    (tmp_path / "again").mkdir()
    assert write_report([again], tmp_path / "again", "m") == write_report([figures], tmp_path, "m")
