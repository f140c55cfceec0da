"""An engine model on the Python backend: one ONNX graph (`1/model.onnx`) run by ONNX Runtime.

Used where Triton has no ONNX Runtime backend (the PyPI-bundled server); on the NGC container the
same graph can be served with `backend: "onnxruntime"` instead, without touching the orchestrator.
Requests that do not come from the `vhs` orchestrator are refused (vhs/runtime/engine_guard.py),
except Triton's warm-up requests while the model loads.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from vhs.runtime.engine_guard import EngineGuard, warmup_request_count
from vhs.runtime.metrics import FLUSH_INTERVAL_S, EngineMetrics
from vhs.runtime.onnx_engine import OnnxEngine


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_path = Path(args["model_repository"]) / args["model_version"] / parameters["onnx_file"]
        self.output_names = [output["name"] for output in config["output"]]
        self.guard = EngineGuard(warmup_request_count(config))
        # tallied and sent by a thread: no metric round trip to the server inside an execution
        self.metrics = EngineMetrics(pb_utils, self.name, FLUSH_INTERVAL_S)
        try:
            self.engine = OnnxEngine(
                str(model_path),
                self.output_names,
                int(parameters["intra_op_num_threads"]),
                on_compute=self.metrics.record_compute,
            )
            self.engine.check_inputs([tensor["name"] for tensor in config["input"]])
        except ValueError as error:  # fails this model's load with a message naming it
            raise ValueError(f"engine '{self.name}': {error}") from None

    def execute(self, requests):
        from_orchestrator = [self.guard.admits(request) for request in requests]
        answers = iter(self._run([r for r, ok in zip(requests, from_orchestrator, strict=True) if ok]))
        return [next(answers) if ok else self._refusal() for ok in from_orchestrator]

    def _refusal(self):
        message = f"engine model '{self.name}' serves only the vhs model; send requests to vhs"
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(message, pb_utils.TritonError.UNSUPPORTED)
        )

    def _run(self, requests):
        if not requests:
            return []
        inputs = [_inputs(request) for request in requests]
        try:
            outputs = self.engine.run_batched(inputs)
        except Exception as error:  # every request of the batch gets the error; the model keeps serving
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))) for _ in requests]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, output[name]) for name in self.output_names])
            for output in outputs
        ]

    def finalize(self):
        self.metrics.close()


def _inputs(request):
    """{name: array} of every input of a request, in one pass (the config names them all)."""
    return {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
