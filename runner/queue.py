"""Waking workers: the store is the queue (see `runner.leases`); these only say when to look.

In one process an event does; across processes and hosts PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class TaskQueue(Protocol):
    """Tells workers that a task may have become claimable."""

    async def put(self, task_id: int) -> None:
        """Wake the workers; never raises: a lost wakeup costs one poll, not the caller's
        work (a drain, a take-back's report, a delivery's intake)."""

    async def wait(self, seconds: float) -> None: ...


class MemoryQueue:
    """The embedded default: intake and workers in one process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def put(self, task_id: int) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Until a `put` (or `seconds`); a `put` before the wait counts too."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()
