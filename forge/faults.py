"""Fault injection per route (latency, 5xx before or after the write, rate limits, connection
resets) as middleware."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

FaultKind = Literal[
    "latency",
    "error",
    "error_after_write",
    "secondary_rate_limit",
    "primary_rate_limit",
    "too_many_requests",
    "reset",
]

# https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:0000000:0000000:00000000."
)
RATE_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
# https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-primary-rate-limit
PRIMARY_RATE_LIMIT_MESSAGE = "API rate limit exceeded for installation."
PRIMARY_RATE_LIMIT = 5000
ERROR_MESSAGES = {500: "Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
TEMPLATE_PARAM = re.compile(r"\\\{[^}]+\\\}")


@dataclass
class Fault:
    """One rule: which requests it hits, what it does, and how many more times.

    A primary rate limit resets `retry_after` seconds after its first hit (`x-ratelimit-reset`)
    and hits nothing after that, like GitHub's hourly window; its status is 403 unless 429.
    """

    method: str
    pattern: re.Pattern[str]
    kind: FaultKind
    remaining: int | None
    delay: float = 0.0
    status: int = 502
    retry_after: int = 1
    reset_at: float | None = None
    clock: Callable[[], float] = time.time

    def hits(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.reset_at is not None and self.clock() >= self.reset_at:
            return False
        same_method = self.method in ("*", method.upper())
        return same_method and self.pattern.fullmatch(path) is not None

    def start_window(self) -> None:
        """A primary limit's window starts at its first hit."""
        if self.kind == "primary_rate_limit" and self.reset_at is None:
            self.reset_at = self.clock() + self.retry_after


def compile_route(route: str) -> re.Pattern[str]:
    """`/repos/{owner}/{repo}/pulls` → a regex; `{name}` is one segment, `*` is anything."""
    escaped = re.escape(route)
    escaped = TEMPLATE_PARAM.sub("[^/]+", escaped)
    return re.compile(escaped.replace(r"\*", ".*"))


@dataclass
class FaultTable:
    """The active rules, consulted in the order they were added."""

    rules: list[Fault] = field(default_factory=list)

    def add(self, fault: Fault) -> Fault:
        """Add a rule."""
        self.rules.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first rule hitting this request, its count decremented."""
        for fault in self.rules:
            if fault.hits(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.start_window()
                return fault
        return None

    def clear(self) -> None:
        """Drop every rule."""
        self.rules.clear()


def fault_response(fault: Fault) -> web.StreamResponse | None:
    """The response a fault answers with, or None when the request should go on."""
    if fault.kind == "error":
        message = ERROR_MESSAGES.get(fault.status, "Server Error")
        return _json(fault.status, {"message": message}, {})
    if fault.kind == "secondary_rate_limit":
        body = {"message": SECONDARY_RATE_LIMIT_MESSAGE, "documentation_url": RATE_LIMIT_DOCS}
        return _json(403, body, {"Retry-After": str(fault.retry_after)})
    if fault.kind == "primary_rate_limit":
        return primary_rate_limit_response(fault)
    if fault.kind == "too_many_requests":
        body = {"message": "Too Many Requests", "documentation_url": RATE_LIMIT_DOCS}
        return _json(429, body, {"Retry-After": str(fault.retry_after)})
    return None


def primary_rate_limit_response(fault: Fault) -> web.Response:
    """403 (or 429) with GitHub's `x-ratelimit-*` headers and no `retry-after`."""
    reset_at = fault.reset_at if fault.reset_at is not None else fault.clock()
    headers = {
        "x-ratelimit-limit": str(PRIMARY_RATE_LIMIT),
        "x-ratelimit-remaining": "0",
        "x-ratelimit-used": str(PRIMARY_RATE_LIMIT),
        "x-ratelimit-reset": str(math.ceil(reset_at)),
        "x-ratelimit-resource": "core",
    }
    body = {"message": PRIMARY_RATE_LIMIT_MESSAGE, "documentation_url": RATE_LIMIT_DOCS}
    return _json(fault.status if fault.status == 429 else 403, body, headers)


def _json(status: int, body: dict[str, str], headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def reset_connection(request: web.Request) -> None:
    """Close the socket with an RST and no response, like a dropped connection."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class ConnectionDropped(Exception):
    """Raised after a reset so no handler runs and no response is written."""


async def apply_fault(
    request: web.Request, path: str, table: FaultTable, handler: Handler
) -> web.StreamResponse:
    """Run `handler` unless a fault rule says otherwise."""
    fault = table.take(request.method, path)
    if fault is None:
        return await handler(request)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.kind == "reset":
        reset_connection(request)
        raise ConnectionDropped(f"{request.method} {path}")
    if fault.kind == "error_after_write":  # a gateway failing after the write was done
        await handler(request)
        return _json(
            fault.status, {"message": ERROR_MESSAGES.get(fault.status, "Server Error")}, {}
        )
    response = fault_response(fault)
    return response if response is not None else await handler(request)
