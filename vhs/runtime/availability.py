"""Does an engine's error say "not now" rather than "not this request"? Read by the orchestrator.

Triton 2.51 gives no status code that separates an engine that is down or overloaded from one that
failed on the request, so the orchestrator reads the error's words: an engine that cannot take
requests right now is UNAVAILABLE to the client, which retries it (client/retry.py) once the
supervisor has reloaded the model (vhs/launcher/supervisor.py) or the load has passed.
"""

from __future__ import annotations

# How Triton and the Python backend word an engine that cannot take requests right now: its stub
# died, it is unloaded or reloading, or its queue is full or timed the request out.
UNAVAILABLE_MARKERS = (
    "is not healthy",
    "is not ready",
    "has no available versions",
    "unknown model",
    "Exceeds maximum queue size",
    "Request timeout expired",
)


def engine_unavailable(message: str) -> bool:
    """True when an engine's error message says it is down or overloaded, not that the request is wrong."""
    return any(marker in message for marker in UNAVAILABLE_MARKERS)
