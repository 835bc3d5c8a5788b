"""Opening the task store that `GANTRY_DATABASE_URL` names, its schema migrated first."""

from __future__ import annotations

from config.database import Database
from runner.pg_store import PostgresTaskStore
from runner.store import SQLiteTaskStore, TaskStore


async def open_store(database: Database) -> TaskStore:
    """SQLite (the embedded default) or PostgreSQL (to scale out)."""
    if database.sqlite_path is not None:
        return await SQLiteTaskStore.open(database.sqlite_path)
    return await PostgresTaskStore.open(database)
