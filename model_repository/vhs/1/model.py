"""The `vhs` model: best-of-N text-to-image, orchestrating the engine models through BLS.

Thin glue over `vhs.serving.orchestrator` (request parsing and validation, engine calls) and
`vhs.best_of_n` (the step sequence shared with the reference pipeline).
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from vhs.serving.orchestrator import error_response, load_orchestrator, read_request, write_response


class TritonPythonModel:
    def initialize(self, args):
        model_dir = Path(args["model_repository"]) / args["model_version"]
        self.best_of_n, self.config, manifest = load_orchestrator(model_dir, pb_utils)
        self.image_shape = tuple(manifest["image_shape"])

    def execute(self, requests):
        return [self._generate(request) for request in requests]

    def _generate(self, request):
        try:
            generation, return_candidates = read_request(request, pb_utils, self.config)
            output = self.best_of_n(generation, return_candidates)
            return write_response(output, pb_utils, self.image_shape)
        except Exception as error:  # every failure becomes this request's error; the model keeps serving
            return error_response(error, pb_utils)
