"""An engine's own compute per request (benchmarks/engine_compute.py) from two metrics pages: the
microseconds inside ONNX Runtime's run over the `vhs` requests answered in between."""

import pytest

from vhs.benchmarks.engine_compute import compute_per_request_us, parse_compute_counters


def page(requests, **engine_us):
    lines = [
        "# TYPE nv_inference_request_success counter",
        f'nv_inference_request_success{{model="vhs",version="1"}} {requests}',
        'nv_inference_request_success{model="llm",version="1"} 999',
        "# TYPE vhs_engine_compute_duration_us counter",
    ]
    lines += [f'vhs_engine_compute_duration_us{{engine="{e}"}} {us}' for e, us in engine_us.items()]
    return "\n".join(lines) + "\n"


def test_compute_per_request_between_two_snapshots():
    before = parse_compute_counters(page(3, dit_prefix=1000.0, llm=500.0, clip_llm=700.0))
    after = parse_compute_counters(page(5, dit_prefix=5000.0, llm=1500.0, clip_llm=700.0))
    assert before.requests == 3 and before.engine_us["llm"] == 500.0
    # two requests: dit_prefix 2 ms each, llm 0.5 ms each; clip_llm did not run
    assert compute_per_request_us(before, after) == {
        "dit_prefix": pytest.approx(2000.0),
        "llm": pytest.approx(500.0),
    }


def test_an_engine_first_seen_after_the_first_snapshot_counts_from_zero():
    before = parse_compute_counters(page(0))
    after = parse_compute_counters(page(4, connector=800.0))
    assert compute_per_request_us(before, after) == {"connector": pytest.approx(200.0)}


def test_no_request_in_between_gives_nothing():
    same = parse_compute_counters(page(2, llm=10.0))
    assert compute_per_request_us(same, same) == {}
