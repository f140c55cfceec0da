"""Stop a request between stages once nobody is waiting for its answer.

A Triton request can be abandoned two ways: the client cancels it (gRPC cancellation, or the
client's own deadline running out, which gRPC reports to the server as a cancellation), or the
deadline the client sent with it (the request's `timeout`, in microseconds) passes. The
orchestrator checks before every engine call. The deadline is a clock read and is checked every
time; whether the client cancelled is a round trip to the server (`is_cancelled()`, ~0.1-0.2 ms
of the stub's time), so it is asked before the first call and then at most once per
`CANCEL_POLL_S` of the request's time: before the expensive stages of a request, not before the
cheap ones right after a check. An abandoned request stops using the engines after at most the
stage that was running when it was abandoned plus CANCEL_POLL_S.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..best_of_n import Steps

# How often a running request asks the server whether its client cancelled it (seconds of its time).
CANCEL_POLL_S = 0.020


class RequestCancelled(RuntimeError):
    """The client cancelled the request or its deadline passed; the orchestrator answers CANCELLED."""


class RequestWatch:
    """Watches one Triton request: `check(stage)` raises RequestCancelled once it is abandoned.

    request: a python-backend InferenceRequest (needs `is_cancelled()`; `timeout()` in microseconds,
        0 = no deadline). clock: seconds, monotonic (injected by tests). poll_s: `is_cancelled()` is
        asked at the first check and then only once `poll_s` has passed since it was last asked
        (0: at every check).
    The deadline counts from when the watch is made, i.e. when the orchestrator starts the request:
    time spent in Triton's queue is not subtracted, so the orchestrator may run slightly past the
    client's deadline, never stop before it.
    """

    def __init__(
        self, request: Any, clock: Callable[[], float] = time.monotonic, poll_s: float = CANCEL_POLL_S
    ):
        self.request = request
        self.clock = clock
        self.poll_s = poll_s
        self.polled_at: float | None = None
        timeout_us = request.timeout()
        self.deadline = clock() + timeout_us / 1e6 if timeout_us else None

    def check(self, stage: str) -> None:
        """Raise RequestCancelled (naming `stage`, the engine not yet called) if the request is abandoned."""
        now = self.clock()
        if self.deadline is not None and now > self.deadline:
            raise RequestCancelled(f"request deadline passed before {stage}")
        if self.polled_at is None or now - self.polled_at >= self.poll_s:
            self.polled_at = now
            if self.request.is_cancelled():
                raise RequestCancelled(f"request cancelled by the client before {stage}")


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
