"""Stop a request between stages once nobody is waiting for its answer.

A Triton request can be abandoned two ways: the client cancels it (gRPC cancellation, or the
client's own deadline running out, which gRPC reports to the server as a cancellation), or the
deadline the client sent with it (the request's `timeout`, in microseconds) passes. The
orchestrator checks both before every engine call, so an abandoned request stops using the
engines after at most the stage that was running when it was abandoned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..best_of_n import Steps


class RequestCancelled(RuntimeError):
    """The client cancelled the request or its deadline passed; the orchestrator answers CANCELLED."""


class RequestWatch:
    """Watches one Triton request: `check(stage)` raises RequestCancelled once it is abandoned.

    request: a python-backend InferenceRequest (needs `is_cancelled()`; `timeout()` in microseconds,
        0 = no deadline). clock: seconds, monotonic (injected by tests).
    The deadline counts from when the watch is made, i.e. when the orchestrator starts the request:
    time spent in Triton's queue is not subtracted, so the orchestrator may run slightly past the
    client's deadline, never stop before it.
    """

    def __init__(self, request: Any, clock: Callable[[], float] = time.monotonic):
        self.request = request
        self.clock = clock
        timeout_us = request.timeout()
        self.deadline = clock() + timeout_us / 1e6 if timeout_us else None

    def check(self, stage: str) -> None:
        """Raise RequestCancelled (naming `stage`, the engine not yet called) if the request is abandoned."""
        if self.request.is_cancelled():
            raise RequestCancelled(f"request cancelled by the client before {stage}")
        if self.deadline is not None and self.clock() > self.deadline:
            raise RequestCancelled(f"request deadline passed before {stage}")


def stop_when_abandoned(steps: Steps, watch: RequestWatch) -> Steps:
    """`steps` (a BestOfN step generator), with `watch.check` run before each engine call it yields;
    works under both drivers (`run_steps`, `run_steps_async`)."""
    try:
        call = next(steps)
    except StopIteration as finished:
        return finished.value
    while True:
        watch.check(call.engine)
        outputs = yield call
        try:
            call = steps.send(outputs)
        except StopIteration as finished:
            return finished.value
