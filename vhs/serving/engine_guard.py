"""Engine models answer only the `vhs` orchestrator, not plain clients.

Triton 2.51 can restrict a whole API (inference) but not one model, so the launcher gives the
server process a random token in its environment (`VHS_ENGINE_TOKEN`, inherited by every
Python-backend stub); the orchestrator attaches it to each BLS request as a request parameter and
the engine models refuse requests without it. A client never sees the token: it lives only in the
server's processes and in the BLS requests that stay inside the server.

When the variable is not set (a server started without `vhs-serve`), engines accept every request,
as before; `vhs-serve` always sets it.
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


def is_from_orchestrator(request: Any) -> bool:
    """True when `request` (a python-backend InferenceRequest) carries this server's token, or the
    server has none."""
    token = engine_token()
    if token is None:
        return True
    sent = json.loads(request.parameters() or "{}").get(ENGINE_TOKEN_PARAMETER, "")
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), token.encode())
