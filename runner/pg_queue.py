"""Waking workers on other processes and hosts: PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg import AsyncConnection

from config.database import Database
from runner.pg_store import CHANNEL

log = logging.getLogger(__name__)


class PostgresQueue:
    """A `put` in any process wakes every worker's `wait`; a lost wakeup costs one poll."""

    def __init__(self, listener: AsyncConnection, notifier: AsyncConnection) -> None:
        self._listener, self._notifier = listener, notifier
        self._event = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="gantry-listen")

    @classmethod
    async def open(cls, database: Database) -> PostgresQueue:
        listener = await AsyncConnection.connect(database.conninfo, autocommit=True)
        await listener.execute(f"listen {CHANNEL}")
        notifier = await AsyncConnection.connect(database.conninfo, autocommit=True)
        return cls(listener, notifier)

    async def _read(self) -> None:
        try:
            async for _ in self._listener.notifies():
                self._event.set()
        except Exception:  # the connection dropped: workers fall back to polling
            log.exception("lost the LISTEN connection; workers poll the store until restart")

    async def put(self, task_id: int) -> None:
        await self._notifier.execute("select pg_notify(%s, %s)", (CHANNEL, str(task_id)))

    async def wait(self, seconds: float) -> None:
        """Until a notification (or `seconds`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._listener.close()
        await self._notifier.close()
