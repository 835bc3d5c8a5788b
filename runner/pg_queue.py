"""Waking workers on other processes and hosts: PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg import AsyncConnection

from config.database import Database
from runner.pg_store import CHANNEL

log = logging.getLogger(__name__)

# A wakeup is a hint: one that cannot be sent within this long is dropped (a poll covers it),
# so that a drain or an intake never waits on a database that is away.
NOTIFY_TIMEOUT_S = 5.0
# Waits between tries of listening again after the LISTEN connection dropped.
RELISTEN_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LOST = (psycopg.Error, OSError, TimeoutError)


class PostgresQueue:
    """A `put` in any process wakes every worker's `wait`; a lost wakeup costs one poll.
    Both connections are made again after the database restarts."""

    def __init__(self, conninfo: str, listener: AsyncConnection, notifier: AsyncConnection) -> None:
        self._conninfo = conninfo
        self._listener: AsyncConnection | None = listener
        self._notifier: AsyncConnection | None = notifier
        self._notify_lost = False  # logged once per outage
        self._lock = asyncio.Lock()
        self._event = asyncio.Event()
        self._reader = asyncio.create_task(self._read_forever(), name="gantry-listen")

    @classmethod
    async def open(cls, database: Database) -> PostgresQueue:
        listener = await listening(database.conninfo)
        notifier = await AsyncConnection.connect(database.conninfo, autocommit=True)
        return cls(database.conninfo, listener, notifier)

    async def _read_forever(self) -> None:
        """Set the event at each notification; listen again (with backoff) when the
        connection drops, and wake the workers then: what came meanwhile was missed."""
        failures = 0
        while True:
            try:
                if self._listener is None:
                    self._listener = await listening(self._conninfo)
                    log.info("listening for task wakeups again")
                    self._event.set()
                failures = 0
                async for _ in self._listener.notifies():
                    self._event.set()
                raise psycopg.OperationalError("the LISTEN connection was closed")
            except LOST:
                if failures == 0:
                    log.warning("lost the LISTEN connection; workers poll until it is back")
                await self._drop_listener()
                await asyncio.sleep(RELISTEN_BACKOFF_S[min(failures, len(RELISTEN_BACKOFF_S) - 1)])
                failures += 1

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def put(self, task_id: int) -> None:
        """Wake the workers; never raises for a lost wakeup (their next poll covers it)."""
        try:
            async with asyncio.timeout(NOTIFY_TIMEOUT_S), self._lock:
                await self._notify(task_id)
        except LOST:
            if not self._notify_lost:
                log.warning("could not send a task wakeup; workers find it at their next poll")
            self._notify_lost = True
            return
        if self._notify_lost:
            log.info("task wakeups are sent again")
        self._notify_lost = False

    async def _notify(self, task_id: int) -> None:
        """NOTIFY, on a new connection when the last one was lost (a database restart)."""
        sql, params = "select pg_notify(%s, %s)", (CHANNEL, str(task_id))
        if self._notifier is not None and not self._notifier.closed:
            try:
                await self._notifier.execute(sql, params)
                return
            except psycopg.OperationalError:  # the server closed it: one new connection
                await self._notifier.close()
        self._notifier = None
        self._notifier = await AsyncConnection.connect(self._conninfo, autocommit=True)
        await self._notifier.execute(sql, params)

    async def wait(self, seconds: float) -> None:
        """Until a notification (or `seconds`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._drop_listener()
        if self._notifier is not None:
            await self._notifier.close()


async def listening(conninfo: str) -> AsyncConnection:
    """A new connection that LISTENs on the tasks' channel."""
    conn = await AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await conn.execute(f"listen {CHANNEL}")
    except BaseException:
        await conn.close()
        raise
    return conn
