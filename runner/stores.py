"""Opening the task store that `GANTRY_DATABASE_URL` names (its schema migrated first), and
the wakeups of the workers that claim from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from config.database import Database
from runner.pg_queue import PostgresQueue
from runner.pg_store import PostgresTaskStore
from runner.queue import MemoryQueue, TaskQueue
from runner.store import SQLiteTaskStore, TaskStore


async def open_store(database: Database) -> TaskStore:
    """SQLite (the embedded default) or PostgreSQL (to scale out)."""
    if database.sqlite_path is not None:
        return await SQLiteTaskStore.open(database.sqlite_path)
    return await PostgresTaskStore.open(database)


@contextlib.asynccontextmanager
async def task_wakeups(database: Database) -> AsyncIterator[TaskQueue]:
    """In-process on SQLite; LISTEN/NOTIFY on PostgreSQL, so that any process's new task
    wakes the workers of every other."""
    if database.sqlite_path is not None:
        yield MemoryQueue()
        return
    queue = await PostgresQueue.open(database)
    try:
        yield queue
    finally:
        await queue.close()
