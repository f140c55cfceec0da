"""The `vhs` model: best-of-N text-to-image, orchestrating the engine models through BLS.

Thin glue over `vhs.runtime.orchestrator` (request validation, engine calls through BLS, response)
and `vhs.best_of_n` (the step sequence shared with the reference pipeline). `execute` calls each
engine with BLS `exec()`: Triton hands the model one request per `execute` (max_batch_size 0), so
there is nothing to overlap inside an instance, and `async_exec()` would only add an event loop and
an executor thread hop per call (docs/performance.md). The model's instances (config.pbtxt) run
requests side by side; their engine calls meet and merge in the engines' dynamic batchers. The
config's `model_warmup` request makes each instance calibrate its latency model (BUDGET_MS) while
the model loads, through the engines (`Orchestrator.warm_up`).
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from vhs.runtime.engine_guard import warmup_request_count
from vhs.runtime.orchestrator import load_orchestrator


class TritonPythonModel:
    def initialize(self, args):
        self.orchestrator = load_orchestrator(
            Path(args["model_repository"]) / args["model_version"],
            pb_utils,
            # Triton's warm-up requests calibrate the latency model before the model is ready
            warmup_request_count(json.loads(args["model_config"])),
        )

    def execute(self, requests):
        return self.orchestrator.execute(requests)

    def finalize(self):
        if self.orchestrator.metrics is not None:
            self.orchestrator.metrics.close()
