"""The logic of the `vhs` Triton model (BLS orchestrator), kept apart from `model.py` so it is unit
tested without a server: `triton_python_backend_utils` is passed in as `pb_utils`.

`model.py` only wires `Orchestrator.execute` to Triton (a plain `def execute`: BLS `exec()`, one
request per call). A request is read and validated, its `BestOfN` steps are driven with engines
called through BLS, and the output becomes the response. Nothing here imports torch unless an engine
returns a GPU tensor.

The orchestrator's own time is part of every request (docs/performance.md measures it); what it
does per request is kept to what the request needs: the budget planner only for budget requests,
`is_cancelled()` (a round trip to the server) at most once per CANCEL_POLL_S, metrics tallied in
the process and sent by a thread (vhs/runtime/metrics.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import protocol as P
from ..best_of_n import BestOfN, GenerationOutput, Steps, run_steps, run_steps_async
from ..errors import EngineError, InvalidRequest
from ..modes import adopt_table_entries
from ..preset_config import PresetConfig
from ..prompting import MAX_PROMPT_BYTES, FastTokenizer, PromptTokenizer, load_question_chat
from ..request import GenerationRequest, parse_request
from .availability import engine_unavailable
from .budget import BudgetPlanner
from .cancellation import CANCEL_POLL_S, RequestCancelled, RequestWatch, stop_when_abandoned
from .dlpack import concatenate_rows, device_handoff, from_engine
from .engine_guard import bls_parameters
from .manifest import LLM_TOKENIZER_DIR, MANIFEST_FILE, TEXT_TOKENIZER_DIR, load_manifest, verify_engine_files
from .metrics import FLUSH_INTERVAL_S, OrchestratorMetrics

# The warm-up requests' prompt (Triton's warm-up sends an empty PROMPT): any valid prompt costs the
# same, the graphs' shapes are fixed.
WARMUP_PROMPT = "a photo of a red circle"
ENGINES_READY_TIMEOUT_S = 120.0
ENGINES_READY_POLL_S = 0.1


@dataclass
class Orchestrator:
    """The `vhs` model: Triton requests in, Triton responses out, engines called through BLS.

    `execute` drives each request with the sync driver (`exec()`, one request after the other);
    `execute_async` drives all requests of one call with the async driver (`async_exec()`), so their
    engine calls are in flight together and the engines' dynamic batchers can merge them.
    """

    pb_utils: Any
    best_of_n: BestOfN
    config: PresetConfig
    prompt_tokenizer: PromptTokenizer
    engines: BLSEngineRunner
    image_shape: tuple[int, int, int]  # (H, W, 3) of an output image
    metrics: OrchestratorMetrics | None = None  # the custom metrics on Triton's metrics port
    budget: BudgetPlanner | None = None  # BUDGET_MS (vhs/runtime/budget.py); made from best_of_n if None
    cancel_poll_s: float = CANCEL_POLL_S  # is_cancelled() at most once per this many seconds of a request
    # Triton's warm-up requests this instance has still to answer (its config's model_warmup): they
    # come before any client's, and each calibrates the latency model (`warm_up`).
    warmup_requests: int = 0

    def __post_init__(self):
        if self.budget is None:
            self.budget = BudgetPlanner(self.best_of_n, self.config.max_candidates)
        self.no_candidates = np.zeros((0, *self.image_shape), dtype=np.uint8)

    def execute(self, requests: list) -> list:
        """One response per request, in order; a failed request gets an error response."""
        responses = []
        for request in requests:
            if self.warmup_requests > 0:
                self.warmup_requests -= 1
                responses.append(self.warm_up())
                continue
            try:
                generation, steps = self.steps(request)
                responses.append(self.respond(generation, run_steps(steps, self.engines)))
            except Exception as error:  # every failure becomes this request's error; the model keeps serving
                responses.append(self.fail(error))
        return responses

    async def execute_async(self, requests: list) -> list:
        """As `execute`, with the engine calls of all requests awaited concurrently."""

        async def respond(request: Any) -> Any:
            try:
                generation, steps = self.steps(request)
                return self.respond(generation, await run_steps_async(steps, self.engines.run_async))
            except Exception as error:  # as in `execute`
                return self.fail(error)

        return list(await asyncio.gather(*(respond(request) for request in requests)))

    def warm_up(self, engines_timeout_s: float = ENGINES_READY_TIMEOUT_S) -> Any:
        """Answer one of Triton's warm-up requests (the model is not ready yet, no client waits):
        calibrate the latency model of every served mode through the engines (vhs/runtime/budget.py),
        so that no budget request pays for a calibration, and make each engine's first BLS calls (the
        slow ones) here rather than in a client's request. The launcher loads this model once the
        server is ready (vhs/launcher/server.py); an engine still loading is waited for, up to
        `engines_timeout_s`. When the engines cannot be reached (a server that loads every model at
        once refuses all inference, BLS too, until it is ready) or anything else fails, the instance
        loads uncalibrated: its first budget request of a mode calibrates it, as without a warm-up,
        and an engine's own failure is left to that engine's load."""
        generation = parse_request(self.config, self.prompt_tokenizer, WARMUP_PROMPT)
        try:
            deadline = time.monotonic() + engines_timeout_s
            for mode in self.config.modes:
                probe = dataclasses.replace(generation, mode=mode)
                run_steps(self.best_of_n.steps(probe), partial(self._once_ready, deadline))
                self.budget.calibrate(probe, self.engines)
            output = run_steps(self.best_of_n.steps(generation), self.engines)
        except Exception:  # never fail the model's load over its calibration
            output = GenerationOutput(np.zeros(self.image_shape, np.uint8), np.zeros(0, np.float32), 0)
        return self.write_response(generation, output)

    def _once_ready(self, deadline: float, engine: str, **inputs) -> dict[str, Any]:
        """`self.engines(engine, **inputs)`, retried while the engine is unavailable (still loading)
        until `deadline` (time.monotonic())."""
        while True:
            try:
                return self.engines(engine, **inputs)
            except EngineError as error:
                if not error.unavailable or time.monotonic() > deadline:
                    raise
                time.sleep(ENGINES_READY_POLL_S)

    def steps(self, request: Any) -> tuple[GenerationRequest, Steps]:
        """One Triton request, validated (raises InvalidRequest), and its engine calls; the calls raise
        RequestCancelled before a call once the client has given up (vhs/runtime/cancellation.py).

        With BUDGET_MS, N is chosen here (a first budget request in a mode may calibrate the latency
        model through the engines first); every request's time teaches the model, except one that
        also decodes every candidate (outside the timed stages)."""
        started = time.perf_counter()
        generation, return_candidates = self.read_request(request)
        if generation.budget_ms is not None:
            if self.budget.needs_calibration(generation):
                self.budget.calibrate(generation, self.engines)
                started = time.perf_counter()  # the calibration is not this request's own time
            generation = self.budget.plan(generation)
        steps = self.best_of_n.steps(generation, return_candidates)
        if not return_candidates:
            steps = self.budget.timed(generation, steps, started)
        watch = RequestWatch(request, poll_s=self.cancel_poll_s)
        return generation, stop_when_abandoned(steps, watch)

    def respond(self, generation: GenerationRequest, output: GenerationOutput) -> Any:
        """The response of a finished request, counted in the metrics."""
        if self.metrics is not None:
            self.metrics.record(generation, output)
        return self.write_response(generation, output)

    def fail(self, error: Exception) -> Any:
        """The error response of a failed request, counted in the metrics."""
        if self.metrics is not None:
            self.metrics.record_failure(error)
        return error_response(error, self.pb_utils)

    def read_request(self, request: Any) -> tuple[GenerationRequest, bool]:
        """Triton request -> validated GenerationRequest and whether candidate images were asked for.

        Triton has already checked dtypes and shapes against config.pbtxt; this checks presence and
        values and raises InvalidRequest naming the field.
        """
        prompt = self._scalar(request, P.PROMPT)
        if prompt is None:  # Triton does not enforce a required input when the model has optional ones
            raise InvalidRequest(f"{P.PROMPT} is required")
        num_candidates = self._scalar(request, P.NUM_CANDIDATES)
        seed = self._scalar(request, P.SEED)
        mode = self._scalar(request, P.MODE)
        budget_ms = self._scalar(request, P.BUDGET_MS)
        generation = parse_request(
            self.config,
            self.prompt_tokenizer,
            _text(prompt, P.PROMPT),
            None if num_candidates is None else int(num_candidates),
            None if seed is None else int(seed),
            None if mode is None else _text(mode, P.MODE),
            None if budget_ms is None else float(budget_ms),
        )
        parameters = json.loads(request.parameters() or "{}")
        return generation, _flag(parameters.get(P.RETURN_CANDIDATES, False))

    def write_response(self, generation: GenerationRequest, output: GenerationOutput) -> Any:
        """GenerationOutput -> Triton InferenceResponse with every output of vhs/protocol.py."""
        predicted_ms = math.nan if generation.predicted_ms is None else generation.predicted_ms
        request_ms = math.nan if output.request_ms is None else output.request_ms
        candidates = self.no_candidates if output.candidate_images is None else output.candidate_images
        tensors = [
            self.pb_utils.Tensor(P.IMAGE, output.image),
            self.pb_utils.Tensor(P.SCORES, np.asarray(output.scores, dtype=np.float32)),
            self.pb_utils.Tensor(P.SELECTED, np.array([output.selected], dtype=np.int32)),
            self.pb_utils.Tensor(
                P.TIMINGS, np.array([json.dumps(output.timings_ms).encode()], dtype=np.object_)
            ),
            self.pb_utils.Tensor(P.CANDIDATE_IMAGES, candidates),
            self.pb_utils.Tensor(
                P.NUM_CANDIDATES_USED, np.array([generation.num_candidates], dtype=np.int32)
            ),
            self.pb_utils.Tensor(P.PREDICTED_MS, np.array([predicted_ms], dtype=np.float32)),
            self.pb_utils.Tensor(P.REQUEST_MS, np.array([request_ms], dtype=np.float32)),
        ]
        return self.pb_utils.InferenceResponse(output_tensors=tensors)

    def _scalar(self, request: Any, name: str) -> Any:
        tensor = self.pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        values = tensor.as_numpy().reshape(-1)
        if values.size != 1:
            raise InvalidRequest(f"{name} must hold exactly one value, got {values.size}")
        return values[0]


def load_orchestrator(model_dir: Path, pb_utils: Any, warmup_requests: int = 0) -> Orchestrator:
    """The orchestrator of the `vhs` model's version folder `model_dir` (manifest + tokenizers);
    `warmup_requests`: how many warm-up requests Triton sends this instance (its config's
    model_warmup, `engine_guard.warmup_request_count`), each answered by `Orchestrator.warm_up`.

    Raises ManifestError when the manifest is unreadable or the engine graphs beside it are not the
    ones it describes.
    """
    manifest = load_manifest(model_dir / MANIFEST_FILE)
    # model_dir is <repository>/vhs/<version>: refuse graphs that are not the ones this manifest describes.
    verify_engine_files(manifest, model_dir.parent.parent)
    adopt_table_entries(manifest["modes"])  # before the config, whose modes must be in the table
    config = PresetConfig(**manifest["preset"])
    prompt_tokenizer = load_prompt_tokenizer(model_dir, config)
    return Orchestrator(
        pb_utils=pb_utils,
        best_of_n=BestOfN(tuple(manifest["latent_shape"]), config.max_timesteps, config.guidance_scale),
        config=config,
        prompt_tokenizer=prompt_tokenizer,
        engines=BLSEngineRunner(pb_utils, manifest["engines"], on_gpu=manifest["device"] == "gpu"),
        image_shape=tuple(manifest["image_shape"]),
        metrics=OrchestratorMetrics(pb_utils, FLUSH_INTERVAL_S),
        warmup_requests=warmup_requests,
    )


def load_prompt_tokenizer(model_dir: Path, config: PresetConfig) -> PromptTokenizer:
    """The prompt and question tokenizers saved beside the manifest in the `vhs` model's `model_dir`,
    read with `tokenizers` alone (the chat template was rendered by the exporter)."""
    return PromptTokenizer(
        FastTokenizer.from_folder(model_dir / TEXT_TOKENIZER_DIR),
        FastTokenizer.from_folder(model_dir / LLM_TOKENIZER_DIR),
        config.text_max_length,
        config.question_max_length,
        config.complex_human_instruction,
        question_chat=load_question_chat(model_dir / LLM_TOKENIZER_DIR),
    )


def error_response(error: Exception, pb_utils: Any) -> Any:
    """InvalidRequest -> INVALID_ARG; an unavailable engine -> UNAVAILABLE; an abandoned request ->
    CANCELLED; anything else -> INTERNAL.

    The message is kept: it names the field, or the engine and its own error.
    """
    codes = pb_utils.TritonError
    if isinstance(error, InvalidRequest):
        code = codes.INVALID_ARG
    elif isinstance(error, EngineError) and error.unavailable:
        code = codes.UNAVAILABLE
    elif isinstance(error, RequestCancelled):
        code = codes.CANCELLED
    else:
        code = codes.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), code))


class BLSEngineRunner:
    """`run(engine, **inputs)` for the step drivers: one BLS request to the engine model, all rows in
    one batch. `__call__` uses `exec()`, `run_async` awaits `async_exec()`.

    The inputs the manifest records for the engine are taken from `inputs` (others are ignored) and
    cast to the graph's dtypes. Outputs stay where the engine left them: numpy views on the host, or
    torch tensors through DLPack when they live on a GPU; with `on_gpu` every request asks for its
    outputs in GPU memory, so what one engine returns reaches the next without a host copy (only the
    N scores and the final image are read back). Tensors with one value per row, shape
    (batch,) in the graph, cross Triton as (batch, 1): Triton needs a non-empty `dims` and the
    configs map it back with `reshape { shape: [] }`.
    """

    def __init__(self, pb_utils: Any, engines: dict, on_gpu: bool = False):
        self.pb_utils = pb_utils
        self.engines = engines
        self.parameters = bls_parameters()  # the engine token (vhs/runtime/engine_guard.py)
        self.request_options = (
            {"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, 0)}
            if on_gpu
            else {}
        )

    def __call__(self, engine: str, **inputs) -> dict[str, Any]:
        parts = [
            self._outputs(engine, self._request(engine, part).exec()) for part in self._chunks(engine, inputs)
        ]
        return _joined(parts)

    async def run_async(self, engine: str, **inputs) -> dict[str, Any]:
        parts = [
            self._outputs(engine, await self._request(engine, part).async_exec())
            for part in self._chunks(engine, inputs)
        ]
        return _joined(parts)

    def _chunks(self, engine: str, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """`inputs` in row chunks of the engine's max batch (the manifest's, where the preset limits
        it below the request's rows: sana-sprint's VAE decoder); one chunk in every other case."""
        spec = self.engines[engine]
        limit = spec.get("max_batch_size")
        declared = [i["name"] for i in spec["inputs"]]
        rows = len(inputs[declared[0]])
        if not limit or rows <= limit:
            return [inputs]
        return [
            {name: inputs[name][start : start + limit] for name in declared}
            for start in range(0, rows, limit)
        ]

    def _request(self, engine: str, inputs: dict[str, Any]) -> Any:
        spec = self.engines[engine]
        tensors = [
            self._to_triton(i["name"], _triton_rows(inputs[i["name"]], i["shape"]), i["dtype"])
            for i in spec["inputs"]
        ]
        output_names = [item["name"] for item in spec["outputs"]]
        return self.pb_utils.InferenceRequest(
            model_name=engine,
            requested_output_names=output_names,
            inputs=tensors,
            parameters=self.parameters,
            **self.request_options,
        )

    def _outputs(self, engine: str, response: Any) -> dict[str, Any]:
        if response.has_error():
            error = response.error()
            # Triton says "down" in words more often than with the UNAVAILABLE code (a dead stub,
            # an unloaded model): vhs/runtime/availability.py lists them.
            unavailable = _error_code(error) == getattr(
                self.pb_utils.TritonError, "UNAVAILABLE", None
            ) or engine_unavailable(error.message())
            state = "is unavailable" if unavailable else "failed"
            raise EngineError(f"engine model '{engine}' {state}: {error.message()}", unavailable)
        outputs = {}
        for output in self.engines[engine]["outputs"]:
            tensor = self.pb_utils.get_output_tensor_by_name(response, output["name"])
            outputs[output["name"]] = _graph_rows(self._from_triton(tensor), output["shape"])
        return outputs

    def _to_triton(self, name: str, value: Any, dtype: str) -> Any:
        if isinstance(value, np.ndarray):
            return self.pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype))
        # A device tensor from an earlier engine: no host copy; the object, its stream finished
        # (vhs/runtime/dlpack.py: the next engine reads it from another process).
        return self.pb_utils.Tensor.from_dlpack(name, device_handoff(value))

    @staticmethod
    def _from_triton(tensor: Any) -> Any:
        return tensor.as_numpy() if tensor.is_cpu() else from_engine(tensor)


def _joined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    return {name: concatenate_rows([part[name] for part in parts]) for name in parts[0]}


def _error_code(error: Any) -> Any:
    """The TritonError's code; `code()` exists from Triton 23.x on, older stubs carry none."""
    code = getattr(error, "code", None)
    return code() if callable(code) else code


def _triton_rows(array: Any, graph_shape: list[int]) -> Any:
    return array.reshape(-1, 1) if len(graph_shape) == 1 else array


def _graph_rows(array: Any, graph_shape: list[int]) -> Any:
    return array.reshape(-1) if len(graph_shape) == 1 else array


def _text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        if len(value) > MAX_PROMPT_BYTES:  # before decoding: an oversized input is not copied once more
            raise InvalidRequest(f"{name} is {len(value)} bytes long; the limit is {MAX_PROMPT_BYTES}")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest(f"{name} must be UTF-8 text: {error}") from None
    return str(value)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
