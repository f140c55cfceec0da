"""`python -m vhs.benchmarks.hop_cost` without a server: the repository it serves is valid Triton
configuration (every ensemble step names a model of the repository, the ensembles chain two echo
models of the same queue delay), and its table's differences are computed from the right cells."""

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs.benchmarks.hop_cost import QUEUE_DELAYS_US, table, write_repository


def read_config(folder: Path) -> mc.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def test_the_repository_chains_two_echo_models_per_queue_delay(tmp_path):
    write_repository(tmp_path, row_floats=16)
    configs = {folder.name: read_config(folder) for folder in tmp_path.iterdir()}
    for name, config in configs.items():
        assert config.name == name
        python_model = config.backend == "python"
        assert (tmp_path / name / "1" / "model.py").is_file() == python_model
    for delay in QUEUE_DELAYS_US:
        first, second = configs[f"echo_{delay}"], configs[f"echo_{delay}_b"]
        for echo in (first, second):
            assert echo.dynamic_batching.max_queue_delay_microseconds == delay
            assert list(echo.input[0].dims) == [16]
        steps = configs[f"chain_{delay}"].ensemble_scheduling.step
        assert [step.model_name for step in steps] == [first.name, second.name]
        # the first step's output is the second step's input: the chain never leaves the server
        assert steps[0].output_map["y"] == steps[1].input_map["x"]
    assert "probe" in configs


def test_the_table_reports_what_a_second_hop_adds_each_way():
    medians = {
        f"{way}|{delay}": [base + extra, 10.0]
        for delay, base in zip(QUEUE_DELAYS_US, (1.0, 0.5), strict=True)
        for way, extra in (("1 call", 0.0), ("2 calls", 1.0), ("ensemble", 0.25))
    }
    rows = table(medians).splitlines()[2:]
    assert rows[0].split("|")[1:7] == [" 500 us ", " 1.00 ", " 2.00 ", " 1.25 ", " +1.00 ", " +0.25 "]
    assert rows[1].split("|")[1:7] == [" 0 us ", " 0.50 ", " 1.50 ", " 0.75 ", " +1.00 ", " +0.25 "]
