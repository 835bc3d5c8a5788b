"""Verify a delivery before anything else reads it: headers, size, type, HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from multidict import CIMultiDictProxy

from config.errors import GantryError

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SIGNATURE_PREFIX = "sha256="
MAX_ID = 2**63 - 1
NUMBERED_FIELDS = (
    ("installation", "id"), ("issue", "number"), ("pull_request", "number"), ("comment", "id"),
    ("review", "id"),
)  # fmt: skip
REQUIRED_HEADERS = ("x-github-event", "x-github-delivery")


class WebhookRejectedError(GantryError):
    """A delivery refused at the edge; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class DeliveryHeaders:
    """The headers GitHub sends with every delivery."""

    event: str
    delivery_id: str
    signature: str
    length: int


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for this body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def check_headers(headers: Mapping[str, str], content_length: int | None) -> DeliveryHeaders:
    """Refuse a delivery by its headers alone, before the body is read."""
    # aiohttp's headers already ignore case; a plain mapping (tests) is lowered first.
    lower = (
        headers
        if isinstance(headers, CIMultiDictProxy)
        else {k.lower(): v for k, v in headers.items()}
    )
    if content_length is None:
        # GitHub always sends one; without it the size of what is read is not known up front.
        raise WebhookRejectedError(411, "Content-Length is required")
    if content_length > MAX_BODY_BYTES:
        raise WebhookRejectedError(413, "payload too large")
    missing = [name for name in REQUIRED_HEADERS if not lower.get(name)]
    if missing:
        raise WebhookRejectedError(400, f"missing header(s): {', '.join(missing)}")
    content_type = lower.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise WebhookRejectedError(415, "content type must be application/json")
    signature = lower.get("x-hub-signature-256", "")
    if not signature:
        # A SHA-1-only delivery (X-Hub-Signature) is refused: SHA-1 is not good enough.
        raise WebhookRejectedError(401, "X-Hub-Signature-256 is required")
    return DeliveryHeaders(
        lower["x-github-event"], lower["x-github-delivery"], signature, content_length
    )


def verify_signature(secret: str, body: bytes, signature: str) -> None:
    """Raise unless `signature` is the HMAC-SHA256 of `body`; constant-time comparison."""
    if not hmac.compare_digest(sign(secret, body).encode(), signature.strip().encode()):
        raise WebhookRejectedError(401, "signature does not match")


def parse_payload(body: bytes) -> dict[str, Any]:
    """A signed body as the JSON object a delivery is; 400 for anything else, however absurd.

    orjson parses a delivery several times faster than `json` (the parse is most of what a
    delivery costs past the HMAC); it refuses JSON nested deeper than 1,024 and invalid UTF-8
    with a `ValueError`, and reads an integer past 64 bits as a float (see `check_numbers`).
    """
    try:
        data = orjson.loads(body)
    except ValueError:
        raise WebhookRejectedError(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebhookRejectedError(400, "body is not a JSON object")
    if not isinstance(data.get("action", ""), str):
        # gidgethub's Router looks the action up in a dict: it must be hashable.
        raise WebhookRejectedError(400, "action is not a string")
    check_numbers(data)
    return data


def check_numbers(data: Mapping[str, Any]) -> None:
    """Refuse ids and numbers out of any real range (they are stored as 64-bit integers); a
    float there is one (an integer too big for 64 bits parses as a float)."""
    for holder, key in NUMBERED_FIELDS:
        inner = data.get(holder)
        value = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(value, float) or (isinstance(value, int) and not 0 < value <= MAX_ID):
            raise WebhookRejectedError(400, f"{holder}.{key} out of range")
