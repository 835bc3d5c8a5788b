"""Error bodies in each provider's own JSON shape, so the agent CLIs show their message."""

from __future__ import annotations

import json
from typing import Any

from gateway.routes import Provider

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    426: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
OPENAI_TYPES = {
    401: "invalid_request_error",
    403: "insufficient_quota",
    429: "rate_limit_exceeded",
}
# Both SDK families read this header; the agents must not retry what will not change.
NO_RETRY = {"x-should-retry": "false"}


def error_body(provider: Provider, status: int, code: str, message: str) -> bytes:
    """A provider-shaped error body for a status the gateway chose."""
    body: dict[str, Any]
    if provider == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(body).encode()


def error_message(body: bytes) -> str | None:
    """The message of a provider-shaped error body (either shape), or None if it is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None
