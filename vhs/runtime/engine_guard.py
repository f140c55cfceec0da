"""Engine models answer only the `vhs` orchestrator, not plain clients.

Triton 2.51 can restrict a whole API (inference) but not one model, so the launcher gives the
server process a random token in its environment (`VHS_ENGINE_TOKEN`, inherited by every
Python-backend stub); the orchestrator attaches it to each BLS request as a request parameter and
the engine models refuse requests without it. A client never sees the token: it lives only in the
server's processes and in the BLS requests that stay inside the server.

When the variable is not set (a server started without `vhs-serve`), engines accept every request,
as before; `vhs-serve` always sets it.

Triton's own warm-up requests (`model_warmup` in an engine's config, export/repository.py) carry no
parameters. They are the only requests a model sees while it loads (Triton routes nothing to a model
before it is ready), so an engine admits exactly as many token-less requests as its config's warm-up
samples announce, then none (`EngineGuard`).
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

ENGINE_TOKEN_ENV = "VHS_ENGINE_TOKEN"
ENGINE_TOKEN_PARAMETER = "vhs_engine_token"


def engine_token() -> str | None:
    """The token of this server process, or None when the server was started without one."""
    return os.environ.get(ENGINE_TOKEN_ENV) or None


def bls_parameters() -> dict[str, str]:
    """Request parameters the orchestrator attaches to every BLS request: the token, if there is one."""
    token = engine_token()
    return {ENGINE_TOKEN_PARAMETER: token} if token else {}


def warmup_request_count(model_config: dict) -> int:
    """How many requests Triton sends a model instance to warm it up: a sample of `batch_size` B is B
    requests of one row each, sent `count` times (0 = once). model_config: the config as JSON."""
    return sum(
        int(sample.get("batch_size", 1)) * max(int(sample.get("count", 0)), 1)
        for sample in model_config.get("model_warmup", [])
    )


class EngineGuard:
    """`admits(request)`: from the orchestrator, or one of the first `warmup_requests` of this instance."""

    def __init__(self, warmup_requests: int):
        self.warmup_left = warmup_requests

    def admits(self, request: Any) -> bool:
        if is_from_orchestrator(request):
            return True
        if self.warmup_left > 0:
            self.warmup_left -= 1
            return True
        return False


def is_from_orchestrator(request: Any) -> bool:
    """True when `request` (a python-backend InferenceRequest) carries this server's token, or the
    server has none."""
    token = engine_token()
    if token is None:
        return True
    sent = json.loads(request.parameters() or "{}").get(ENGINE_TOKEN_PARAMETER, "")
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), token.encode())
