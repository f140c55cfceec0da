"""A thin client for the `vhs` model: one prompt in, the best of N images out.

    with VHSClient("127.0.0.1:8001") as client:
        result = client.generate("a photo of a red circle", num_candidates=4, seed=0)
        result.image  # uint8 [H, W, 3], result.scores float32 [N], result.selected int
        result = client.generate("a photo of a red circle", budget_ms=50)  # the largest N that fits
        result.num_candidates_used, result.predicted_ms

Tensor names and modes come from `vhs/protocol.py`, the contract the orchestrator implements.
Optional inputs are sent only when given, so the server's preset supplies the defaults. Any error the
server or the connection reports is raised as `VHSRequestError` carrying Triton's own message, after
UNAVAILABLE (engine down, queue full, server restarting) has been retried per `retry`
(client/retry.py; `RetryPolicy(attempts=1)` turns retrying off).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import tritonclient.grpc
import tritonclient.grpc.aio
import tritonclient.http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from vhs import protocol as P

from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry, call_with_retry_async

PROTOCOLS = ("grpc", "http")
DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
DEFAULT_TIMEOUT_S = 600.0


class VHSRequestError(RuntimeError):
    """The server rejected or failed a request, or could not be reached.

    message: Triton's message (e.g. "PROMPT must be a non-empty string").
    status: the transport's status (e.g. "StatusCode.INVALID_ARGUMENT" over gRPC, "400" over HTTP).
    """

    def __init__(self, message: str, status: str | None = None):
        super().__init__(f"[{status}] {message}" if status else message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ImageRequest:
    """One generation request; None leaves the field to the server's preset default."""

    prompt: str
    num_candidates: int | None = None
    seed: int | None = None
    mode: str | None = None
    return_candidates: bool = False
    budget_ms: float | None = None  # a time budget: N is the largest, up to num_candidates, that fits


@dataclass
class GenerationResult:
    """What the `vhs` model returned for one prompt.

    image: uint8 [H, W, 3], the selected candidate.
    scores: float32 [N], P(yes) of every candidate.
    selected: index of the selected candidate.
    timings_ms: server-side milliseconds per stage, as the orchestrator measured them.
    candidate_images: uint8 [N, H, W, 3] when requested with return_candidates, else None.
    round_trip_ms: client-side wall time of the request, transport included.
    num_candidates_used: the N the server generated (chosen by the budget when one was sent).
    predicted_ms: with a budget, the server's predicted time at that N (above the budget when not
        even N = 1 was predicted to fit); NaN without one.
    request_ms: the request's measured time in the orchestrator, the time a budget bounds (NaN with
        return_candidates).
    """

    image: np.ndarray
    scores: np.ndarray
    selected: int
    timings_ms: dict[str, float]
    candidate_images: np.ndarray | None
    round_trip_ms: float
    num_candidates_used: int
    predicted_ms: float
    request_ms: float


class VHSClient:
    """Blocking client over gRPC or HTTP; `generate_many` runs requests concurrently on threads.

    Each thread gets its own tritonclient connection (the HTTP client is not thread-safe).
    """

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model_name: str = P.ORCHESTRATOR_MODEL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.url = url or DEFAULT_URLS[protocol]
        self.protocol = protocol
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retry = retry
        self._triton = tritonclient.grpc if protocol == "grpc" else tritonclient.http
        self._per_thread = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()

    def _connection(self) -> Any:
        connection = getattr(self._per_thread, "connection", None)
        if connection is None:
            if self.protocol == "grpc":
                connection = tritonclient.grpc.InferenceServerClient(self.url)
            else:
                connection = tritonclient.http.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            self._per_thread.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def is_ready(self) -> bool:
        """True when the server is up and the `vhs` model is loaded."""
        try:
            connection = self._connection()
            return connection.is_server_ready() and connection.is_model_ready(self.model_name)
        except InferenceServerException:
            return False

    def generate(
        self,
        prompt: str,
        num_candidates: int | None = None,
        seed: int | None = None,
        mode: str | None = None,
        return_candidates: bool = False,
        budget_ms: float | None = None,
    ) -> GenerationResult:
        """Generate N candidates for `prompt` and return the verifier's pick (see GenerationResult).

        budget_ms: a time budget (milliseconds in the server): N becomes the largest, up to
        num_candidates (or the preset's max_candidates), whose predicted time fits it.
        Raises VHSRequestError with Triton's message on any server or connection error.
        """
        return self.generate_request(
            ImageRequest(prompt, num_candidates, seed, mode, return_candidates, budget_ms)
        )

    def generate_request(self, request: ImageRequest) -> GenerationResult:
        """`generate` for an ImageRequest, UNAVAILABLE retried per `self.retry`."""
        return call_with_retry(lambda: self._generate_once(request), self.retry)

    def _generate_once(self, request: ImageRequest) -> GenerationResult:
        grpc_deadline = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        started = time.perf_counter()
        try:
            response = self._connection().infer(
                self.model_name,
                build_inputs(self._triton, request),
                outputs=requested_outputs(self._triton, request.return_candidates),
                parameters=request_parameters(request),
                timeout=server_timeout_us(self.timeout_s),
                **grpc_deadline,
            )
        except InferenceServerException as error:
            raise VHSRequestError(error.message(), error.status()) from None
        return decode_response(response, request.return_candidates, (time.perf_counter() - started) * 1e3)

    def generate_many(
        self, requests: Iterable[ImageRequest | str], concurrency: int = 8
    ) -> list[GenerationResult]:
        """Run `requests` (ImageRequests or bare prompts) with up to `concurrency` in flight.

        Results come back in request order; the first failing request's VHSRequestError is raised
        once the requests already in flight have finished.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        requests = [ImageRequest(item) if isinstance(item, str) else item for item in requests]
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vhs-client") as pool:
            return list(pool.map(self.generate_request, requests))

    def close(self) -> None:
        """Close every connection this client opened."""
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._per_thread = threading.local()

    def __enter__(self) -> VHSClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncVHSClient:
    """asyncio client over gRPC (`tritonclient.grpc.aio`), one channel shared by all requests."""

    def __init__(
        self,
        url: str = DEFAULT_URLS["grpc"],
        model_name: str = P.ORCHESTRATOR_MODEL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
    ):
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retry = retry
        self._connection = tritonclient.grpc.aio.InferenceServerClient(url)

    async def generate(
        self,
        prompt: str,
        num_candidates: int | None = None,
        seed: int | None = None,
        mode: str | None = None,
        return_candidates: bool = False,
        budget_ms: float | None = None,
    ) -> GenerationResult:
        """As VHSClient.generate, awaitable."""
        return await self.generate_request(
            ImageRequest(prompt, num_candidates, seed, mode, return_candidates, budget_ms)
        )

    async def generate_request(self, request: ImageRequest) -> GenerationResult:
        """`generate` for an ImageRequest, UNAVAILABLE retried per `self.retry`."""
        return await call_with_retry_async(lambda: self._generate_once(request), self.retry)

    async def _generate_once(self, request: ImageRequest) -> GenerationResult:
        started = time.perf_counter()
        try:
            response = await self._connection.infer(
                self.model_name,
                build_inputs(tritonclient.grpc, request),
                outputs=requested_outputs(tritonclient.grpc, request.return_candidates),
                parameters=request_parameters(request),
                timeout=server_timeout_us(self.timeout_s),
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as error:
            raise VHSRequestError(error.message(), error.status()) from None
        return decode_response(response, request.return_candidates, (time.perf_counter() - started) * 1e3)

    async def generate_many(
        self, requests: Iterable[ImageRequest | str], concurrency: int = 8
    ) -> list[GenerationResult]:
        """As VHSClient.generate_many, with at most `concurrency` requests awaiting at once."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        slots = asyncio.Semaphore(concurrency)

        async def limited(request: ImageRequest) -> GenerationResult:
            async with slots:
                return await self.generate_request(request)

        requests = [ImageRequest(item) if isinstance(item, str) else item for item in requests]
        return list(await asyncio.gather(*(limited(request) for request in requests)))

    async def close(self) -> None:
        await self._connection.close()

    async def __aenter__(self) -> AsyncVHSClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


def build_inputs(triton: ModuleType, request: ImageRequest) -> list[Any]:
    """ImageRequest -> InferInputs of `triton` (tritonclient.grpc or .http); None fields are left out."""
    values = {P.PROMPT: np.array([request.prompt.encode("utf-8")], dtype=np.object_)}
    if request.num_candidates is not None:
        values[P.NUM_CANDIDATES] = np.array([request.num_candidates], dtype=np.int32)
    if request.seed is not None:
        values[P.SEED] = np.array([request.seed], dtype=np.int64)
    if request.mode is not None:
        values[P.MODE] = np.array([request.mode.encode("utf-8")], dtype=np.object_)
    if request.budget_ms is not None:
        values[P.BUDGET_MS] = np.array([request.budget_ms], dtype=np.float32)
    inputs = []
    for name, value in values.items():
        tensor = triton.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def server_timeout_us(timeout_s: float) -> int:
    """The request's deadline as Triton reads it (microseconds): the orchestrator stops the request
    between stages once it has passed, and a queue drops it after that long."""
    return int(timeout_s * 1e6)


def requested_outputs(triton: ModuleType, return_candidates: bool) -> list[Any]:
    """The outputs to ask for: CANDIDATE_IMAGES only when the candidates were requested."""
    names = [P.IMAGE, P.SCORES, P.SELECTED, P.TIMINGS, P.NUM_CANDIDATES_USED, P.PREDICTED_MS, P.REQUEST_MS]
    if return_candidates:
        names.append(P.CANDIDATE_IMAGES)
    return [triton.InferRequestedOutput(name) for name in names]


def request_parameters(request: ImageRequest) -> dict[str, Any] | None:
    """Triton request parameters: `return_candidates` only when it is asked for."""
    return {P.RETURN_CANDIDATES: True} if request.return_candidates else None


def decode_response(response: Any, return_candidates: bool, round_trip_ms: float) -> GenerationResult:
    """A tritonclient InferResult of the `vhs` model -> GenerationResult."""
    timings = response.as_numpy(P.TIMINGS).reshape(-1)[0]
    return GenerationResult(
        image=response.as_numpy(P.IMAGE),
        scores=response.as_numpy(P.SCORES).astype(np.float32, copy=False),
        selected=int(response.as_numpy(P.SELECTED).reshape(-1)[0]),
        timings_ms={stage: float(ms) for stage, ms in json.loads(timings).items()},
        candidate_images=response.as_numpy(P.CANDIDATE_IMAGES) if return_candidates else None,
        round_trip_ms=round_trip_ms,
        num_candidates_used=int(response.as_numpy(P.NUM_CANDIDATES_USED).reshape(-1)[0]),
        predicted_ms=float(response.as_numpy(P.PREDICTED_MS).reshape(-1)[0]),
        request_ms=float(response.as_numpy(P.REQUEST_MS).reshape(-1)[0]),
    )
