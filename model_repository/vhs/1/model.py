"""The `vhs` model: best-of-N text-to-image, orchestrating the engine models through BLS.

Thin glue over `vhs.runtime.orchestrator` (request validation, engine calls through BLS, response)
and `vhs.best_of_n` (the step sequence shared with the reference pipeline). `execute` is a
coroutine awaiting each engine call (`async_exec`); Triton hands it one request at a time, and the
model's instances (config.pbtxt) run requests side by side, whose engine calls meet and merge in
the engines' dynamic batchers (docs/performance.md).
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from vhs.runtime.orchestrator import load_orchestrator


class TritonPythonModel:
    def initialize(self, args):
        self.orchestrator = load_orchestrator(
            Path(args["model_repository"]) / args["model_version"], pb_utils
        )

    async def execute(self, requests):
        return await self.orchestrator.execute_async(requests)
