"""make bench-quick's guard on the orchestrator's own time (issue 27): it prints every mode's
milliseconds per request and fails (exit status 1) when one is above the budget; the number is the
stage split's orchestrator row, read from the same perf_analyzer cell as the tables."""

from vhs.benchmarks.bench import check_orchestrator
from vhs.benchmarks.bench_tables import ORCHESTRATOR_BUDGET_MS, orchestrator_check, orchestrator_own_ms


def test_within_budget_is_ok_and_above_is_fail():
    lines, within = orchestrator_check({("shapes", "vhs"): 2.4, ("shapes", "none"): 1.9}, budget_ms=3.0)
    assert within and lines.count(" ok") == 2 and "FAIL" not in lines
    assert "shapes vhs N = 4 concurrency 1: 2.40 ms per request (budget 3.00 ms) ok" in lines
    lines, within = orchestrator_check({("shapes", "vhs"): 2.4, ("shapes", "clip"): 3.2}, budget_ms=3.0)
    assert not within
    assert "shapes clip N = 4 concurrency 1: 3.20 ms per request (budget 3.00 ms) FAIL" in lines


def test_the_budget_is_the_issues():
    assert ORCHESTRATOR_BUDGET_MS == 3.0


class Figures:
    """The part of PresetFigures the guard reads: one perf cell per mode at N = 4, concurrency 1."""

    preset = "shapes"

    def __init__(self, server_us, engines_us):
        from vhs.benchmarks.bench_tables import Grid

        self.grid = Grid((4,), (1,), measurement_interval_ms=1, latency_prompts=1, modes=("vhs",))
        row = {
            "Concurrency": 1,
            "Server Queue": 100.0,
            "Server Compute Input": 50.0,
            "Server Compute Infer": server_us,
            "Server Compute Output": 350.0,
            "Client Send": 10.0,
            "Network+Server Send/Recv": 200.0,
            "Client Recv": 5.0,
        }
        composing = {
            engine: {"request_latency_us": us, "compute_infer_us": us * 0.8}
            for engine, us in engines_us.items()
        }
        self.cells = [{"mode": "vhs", "num_candidates": 4, "row": row, "composing": composing}]


def test_the_guard_reads_the_stage_splits_orchestrator_row_and_sets_the_exit_status(capsys):
    engines = {"text_encoder": 2000.0, "dit_prefix": 8000.0, "llm": 8000.0}  # 18 ms in the engines
    # server time 18 ms + 2.5 ms of its own (0.1 queue + 0.05 input + 0.35 output + 2.0 in execute)
    cheap = Figures(server_us=18_000 + 2_000, engines_us=engines)
    assert orchestrator_own_ms(cheap) == {"vhs": 2.5}
    assert check_orchestrator([cheap], budget_ms=3.0) == 0
    costly = Figures(server_us=18_000 + 7_000, engines_us=engines)
    assert check_orchestrator([costly], budget_ms=3.0) == 1
    printed = capsys.readouterr().out
    assert "7.50 ms per request (budget 3.00 ms) FAIL" in printed and "FAIL: the orchestrator" in printed
