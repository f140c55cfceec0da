"""`make gpu-smoke`'s logic that needs no GPU: what it detects, which checks it skips and why, how
it compares two runs, its table and exit status; and that here (no GPU) it says it ran nothing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from vhs.benchmarks import gpu_smoke
from vhs.benchmarks.gpu_smoke import Environment, compare_results, exit_status, format_rows, run_checks


def output(selected=1, scores=(0.2, 0.7, 0.4), level=100):
    image = np.full((4, 4, 3), level, np.uint8)
    return SimpleNamespace(selected=selected, scores=np.array(scores, dtype=np.float32), image=image)


def test_this_machine_skips_every_check_and_says_so(capsys):
    assert gpu_smoke.main([]) == 0
    printed = capsys.readouterr().out
    assert "nothing was run on a GPU" in printed
    assert printed.count("  skipped ") == 3 and "sees no CUDA device" in printed


def test_detect_reads_the_device_the_server_and_tensorrt(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(gpu_smoke.shutil, "which", lambda name: None)
    env = gpu_smoke.detect()
    assert env.cuda_device == "NVIDIA H100 80GB HBM3" and not env.gpu_tritonserver
    assert "nvidia-pytriton" in env.reasons["tritonserver"] and env.tensorrt is None


def test_checks_run_only_where_their_requirement_is_met():
    calls = []

    def runner(name, result=(True, "ok")):
        def run():
            calls.append(name)
            if isinstance(result, Exception):
                raise result
            return result

        return run

    env = Environment("GPU", False, "10.14.1", {"tritonserver": "no server here"})
    runners = {
        "reference": runner("reference", (False, "winner differs")),
        "served": runner("served"),
        "tensorrt": runner("tensorrt", RuntimeError("plan build failed")),
    }
    rows = run_checks(env, runners)
    assert calls == ["reference", "tensorrt"]
    assert [(r.check, r.status) for r in rows] == [
        ("reference", "failed"),
        ("served", "skipped"),
        ("tensorrt", "failed"),
    ]
    assert rows[1].detail == "no server here" and "plan build failed" in rows[2].detail
    assert exit_status(rows) == 1
    table = format_rows(env, rows)
    assert "GPU smoke on GPU (TensorRT 10.14.1" in table and "nothing was run" not in table
    no_gpu = Environment(None, False, None, {"cuda": "no device", "tritonserver": "no device"})
    assert {r.status for r in run_checks(no_gpu, runners)} == {"skipped"}
    assert exit_status(run_checks(no_gpu, runners)) == 0


def test_two_runs_agree_only_with_the_same_winners_and_bounded_differences():
    reference = [output(), output(selected=0, scores=(0.9, 0.1, 0.3))]
    assert compare_results(reference, [output(scores=(0.21, 0.7, 0.4)), reference[1]])[0]
    assert not compare_results(reference, [output(selected=2), reference[1]])[0]
    assert not compare_results(reference, [output(scores=(0.2, 0.75, 0.4)), reference[1]])[0]
    passed, detail = compare_results(reference, [output(level=120), reference[1]])
    assert not passed and "image max 20" in detail
