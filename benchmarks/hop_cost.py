"""What one engine call costs the `vhs` orchestrator beyond the engine's own compute, and what a
Triton ensemble would save.

    .venv/bin/python -m vhs.benchmarks.hop_cost

Serves a throw-away repository of Python-backend models that do no compute (`echo`: its input back,
so every millisecond measured is the exchange, not the work) and a BLS `probe` model that times,
inside the server, interleaved round by round:

- `1 call`:       one BLS `exec()` to an echo model (the cost of one engine hop);
- `2 calls`:      two in a row, the second on the first's output (a chain of two engines, as the
                  orchestrator calls connector -> llm or dit_suffix -> vae_decoder today);
- `ensemble`:     one BLS `exec()` to an ensemble of the same two echo models (the chain inside the
                  server: the first step's output goes to the second without coming back to the
                  orchestrator's process).

each with the engines' dynamic batching queue delay of the exporter (500 us) and 0. The payload is
`--rows` rows of `--row-floats` float32 (default 4 x 64 x 64, a VHS request's hidden states on
`shapes`). Medians of `--rounds` rounds; docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from vhs.launcher.server import TritonServer

QUEUE_DELAYS_US = (500, 0)
WAYS = ("1 call", "2 calls", "ensemble")

ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(request, "x").as_numpy() for request in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", x)]) for x in inputs]
"""

PROBE_MODEL = """
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def call(model, x, output):
    response = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=[output], inputs=[pb_utils.Tensor("x", x)]
    ).exec()
    if response.has_error():
        raise RuntimeError(response.error().message())
    return pb_utils.get_output_tensor_by_name(response, output).as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            rounds, rows, row_floats, delays = json.loads(
                pb_utils.get_input_tensor_by_name(request, "SETTINGS").as_numpy()[0]
            )
            x = np.random.default_rng(0).random((rows, row_floats), dtype=np.float32)
            times = {}
            for _ in range(rounds):
                for delay in delays:
                    first, second, chain = f"echo_{delay}", f"echo_{delay}_b", f"chain_{delay}"
                    for way, run in (
                        ("1 call", lambda: call(first, x, "y")),
                        ("2 calls", lambda: call(second, call(first, x, "y"), "y")),
                        ("ensemble", lambda: call(chain, x, "y")),
                    ):
                        start = time.perf_counter()
                        run()
                        times.setdefault(f"{way}|{delay}", []).append((time.perf_counter() - start) * 1e3)
            medians = {key: [float(np.median(v)), float(np.percentile(v, 99))] for key, v in times.items()}
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("RESULT", np.array([json.dumps(medians).encode()], dtype=np.object_))]
                )
            )
        return responses
"""


def echo_config(name: str, row_floats: int, queue_delay_us: int) -> str:
    return f"""name: "{name}"
backend: "python"
max_batch_size: 16
input {{ name: "x" data_type: TYPE_FP32 dims: [{row_floats}] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [{row_floats}] }}
instance_group {{ count: 1 kind: KIND_CPU }}
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
"""


def chain_config(name: str, first: str, second: str, row_floats: int) -> str:
    return f"""name: "{name}"
platform: "ensemble"
max_batch_size: 16
input {{ name: "x" data_type: TYPE_FP32 dims: [{row_floats}] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [{row_floats}] }}
ensemble_scheduling {{
  step [
    {{ model_name: "{first}" model_version: -1
      input_map {{ key: "x" value: "x" }} output_map {{ key: "y" value: "middle" }} }},
    {{ model_name: "{second}" model_version: -1
      input_map {{ key: "x" value: "middle" }} output_map {{ key: "y" value: "y" }} }}
  ]
}}
"""


PROBE_CONFIG = """name: "probe"
backend: "python"
max_batch_size: 0
input { name: "SETTINGS" data_type: TYPE_STRING dims: [1] }
output { name: "RESULT" data_type: TYPE_STRING dims: [1] }
instance_group { count: 1 kind: KIND_CPU }
"""


def write_repository(root: Path, row_floats: int) -> None:
    """The echo models (two per queue delay), their ensembles and the probe under `root`."""

    def model(name: str, config: str, code: str | None) -> None:
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        if code is not None:
            (root / name / "1" / "model.py").write_text(code)

    for delay in QUEUE_DELAYS_US:
        for name in (f"echo_{delay}", f"echo_{delay}_b"):
            model(name, echo_config(name, row_floats, delay), ECHO_MODEL)
        chain = f"chain_{delay}"
        model(chain, chain_config(chain, f"echo_{delay}", f"echo_{delay}_b", row_floats), None)
    model("probe", PROBE_CONFIG, PROBE_MODEL)


def table(medians: dict[str, float]) -> str:
    """Markdown: median ms per way and queue delay, what a second hop adds either way, and the p99s."""
    lines = [
        "| queue delay | 1 call | 2 calls | ensemble of 2 | 2nd hop by BLS | 2nd step in an ensemble "
        "| p99: 1 call, 2 calls, ensemble |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for delay in QUEUE_DELAYS_US:
        (one, one_p99), (two, two_p99), (chain, chain_p99) = (medians[f"{way}|{delay}"] for way in WAYS)
        lines.append(
            f"| {delay} us | {one:.2f} | {two:.2f} | {chain:.2f} | {two - one:+.2f} | {chain - one:+.2f} "
            f"| {one_p99:.2f}, {two_p99:.2f}, {chain_p99:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--row-floats", type=int, default=64 * 64)
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hop_cost_") as root:
        write_repository(Path(root), args.row_floats)
        with (
            TritonServer(root, build_dir=args.build_dir) as server,
            grpcclient.InferenceServerClient(server.grpc_url) as triton,
        ):
            settings = grpcclient.InferInput("SETTINGS", [1], "BYTES")
            values = json.dumps([args.rounds, args.rows, args.row_floats, QUEUE_DELAYS_US])
            settings.set_data_from_numpy(np.array([values], dtype=np.object_))
            triton.infer("probe", [settings], client_timeout=600)  # warm: first calls open shared memory
            result = triton.infer("probe", [settings], client_timeout=600)
    print(table(json.loads(result.as_numpy("RESULT")[0])))


if __name__ == "__main__":
    main()
