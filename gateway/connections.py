"""Who may hold a connection to the gateway, and for how long, before any token is seen.

aiohttp's defaults let a peer hold 128 header lines of 8 KiB on any number of connections
and never finish its request head. Here the head is bounded (`HeadLimits`), connections are
counted globally and per source address, and a head must be complete within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadLimits:
    """What one connection may hold before it is a request, and how many there may be.

    Codex and Claude Code send about 25 header lines, the longest (`anthropic-beta`,
    `user-agent`) a few hundred bytes, and every head in a single write."""

    max_headers: int = 64
    max_field_size: int = 4096
    max_line_size: int = 4096
    head_seconds: float = 10.0
    connections: int = 128
    per_address: int = 32

    def server_args(self) -> dict[str, Any]:
        """aiohttp's parser limits (keyword arguments of `AppRunner`)."""
        return {
            "max_headers": self.max_headers,
            "max_field_size": self.max_field_size,
            "max_line_size": self.max_line_size,
        }


class Admission:
    """Counts open connections per source address: a pure decision, no I/O."""

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Take a slot for a new connection from `address`, if one is free."""
        if sum(self.open.values()) >= self.limits.connections:
            return False
        if self.open[address] >= self.limits.per_address:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        """Give back the slot of a closed connection."""
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol: refuses connections past the caps, and closes one whose
    request head is not complete `head_seconds` after its first byte arrived while idle."""

    def __init__(self, inner: asyncio.Protocol, admission: Admission, guards: Guards) -> None:
        self.inner, self.admission, self.guards = inner, admission, guards
        self.address: str | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.admission.admit(address):
            log.warning("gateway: refused a connection from %s: too many open", address)
            transport.abort()
            return
        self.address, self.transport = address, transport
        self.guards.by_transport[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.address is None:
            return
        if data and not self.busy and self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.admission.limits.head_seconds, self._overdue)
        self.inner.data_received(data)

    def _overdue(self) -> None:
        self._deadline = None
        if not self.busy and self.transport is not None:
            log.info("gateway: closed a connection from %s: no request head", self.address)
            self.transport.abort()

    def request_started(self) -> None:
        """A complete head arrived: the deadline is met."""
        self.busy = True
        self._cancel_deadline()

    def request_ended(self) -> None:
        """The answer is out; the next bytes start a new head's deadline."""
        self.busy = False

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is None:
            return
        self._cancel_deadline()
        if self.transport is not None:
            self.guards.by_transport.pop(self.transport, None)
        self.admission.release(self.address)
        self.address = None
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.address is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Guards:
    """The live connections of one listening gateway, found by their transport."""

    def __init__(self, limits: HeadLimits) -> None:
        self.admission = Admission(limits)
        self.by_transport: dict[asyncio.BaseTransport, GuardedConnection] = {}

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` wrapping aiohttp's."""
        return lambda: GuardedConnection(inner(), self.admission, self)

    def of(self, transport: asyncio.BaseTransport | None) -> GuardedConnection | None:
        """The guard of a request's connection (None once it closed)."""
        return self.by_transport.get(transport) if transport is not None else None
