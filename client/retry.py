"""Bounded retry of requests the server could not take right now (UNAVAILABLE).

The server answers UNAVAILABLE while an engine model is down or being reloaded, when a queue is
full, and (as a refused connection) while the whole server restarts. While the supervisor reloads
the `vhs` model itself, Triton answers for it with its own words: "has no available versions"
(unloaded, NOT_FOUND) or "Stub process ... is not healthy" (a dead instance, INTERNAL). All of
these pass within seconds, so the clients try again after a growing, jittered delay, a bounded
number of times. No other error is retried: a bad request stays bad, other failures need a human.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

Result = TypeVar("Result")

# How tritonclient reports UNAVAILABLE: the gRPC status code, or HTTP 503.
RETRYABLE_STATUSES = ("StatusCode.UNAVAILABLE", "503")
RETRYABLE_MESSAGES = ("has no available versions", "is not healthy")


@dataclass(frozen=True)
class RetryPolicy:
    """attempts: tries in all (1 = no retry). Delay before retry k (k = 1, 2, ...):
    min(first_delay_s * 2^(k-1), max_delay_s), times a random factor in [0.5, 1) so that clients
    turned away together do not come back together. The defaults wait at most 23.75 s in all,
    longer than the supervisor takes to reload a model (docs/operations.md)."""

    attempts: int = 10
    first_delay_s: float = 0.25
    max_delay_s: float = 4.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(
                f"need 0 <= first_delay_s <= max_delay_s, got {self.first_delay_s}, {self.max_delay_s}"
            )

    def delays(self) -> Iterator[float]:
        """The attempts - 1 waits between tries, in seconds."""
        for retry in range(self.attempts - 1):
            yield min(self.first_delay_s * 2**retry, self.max_delay_s) * random.uniform(0.5, 1.0)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def is_retryable(error: Exception) -> bool:
    """True for errors (VHSRequestError: `status`, `message`) that mean "try again later"."""
    message = getattr(error, "message", "")
    return getattr(error, "status", None) in RETRYABLE_STATUSES or any(
        text in message for text in RETRYABLE_MESSAGES
    )


def call_with_retry(call: Callable[[], Result], policy: RetryPolicy) -> Result:
    """`call()`, retried per `policy` while it raises a retryable error; the last error is raised
    when the attempts are used up."""
    for delay in [*policy.delays(), None]:
        try:
            return call()
        except Exception as error:
            if delay is None or not is_retryable(error):
                raise
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def call_with_retry_async(call: Callable[[], Awaitable[Result]], policy: RetryPolicy) -> Result:
    """As call_with_retry, for a coroutine function; waits with asyncio.sleep."""
    for delay in [*policy.delays(), None]:
        try:
            return await call()
        except Exception as error:
            if delay is None or not is_retryable(error):
                raise
        await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")
