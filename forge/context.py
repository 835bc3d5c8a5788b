"""What every handler of the stand-in shares: the world, the contract, and the logs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from forge.faults import FaultTable
from forge.hook_log import HookLog
from forge.openapi import OpenAPISpec
from forge.render import Urls
from forge.state import State

API_PREFIX = "/api/v3"


@dataclass(frozen=True)
class Violation:
    """A request GitHub's OpenAPI description says GitHub would not accept."""

    method: str
    path: str
    reason: str


@dataclass(frozen=True)
class RequestRecord:
    """One request the stand-in received, the status it answered (0: connection reset), and
    when it answered (`time.monotonic()`; records compare without it)."""

    method: str
    path: str
    status: int
    at: float = field(default_factory=time.monotonic, compare=False)


@dataclass
class Context:
    """Shared by the REST handlers, the git handler and the middlewares."""

    state: State
    spec: OpenAPISpec
    repos_dir: Path
    urls: Urls = field(default_factory=lambda: Urls("http://forge.invalid", "http://forge.invalid"))
    violations: list[Violation] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    faults: FaultTable = field(default_factory=FaultTable)
    hook_logs: dict[int, HookLog] = field(default_factory=dict)
    sending: set[asyncio.Task[None]] = field(default_factory=set)

    def hook_log(self, app_id: int) -> HookLog:
        """The delivery log of one App."""
        return self.hook_logs.setdefault(app_id, HookLog())


CONTEXT_KEY = web.AppKey("forge_context", Context)


def context_of(request: web.Request) -> Context:
    """The shared context of the app serving `request`."""
    return request.config_dict[CONTEXT_KEY]
