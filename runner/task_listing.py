"""Read-only listings of the SQLite task store, on a connection of their own (WAL lets readers
run beside the store's writer), for pages that show many tasks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from runner.task import TASK_FIELDS, Task, task_from_row

REPO_TASKS_LIMIT = 200


def repo_tasks(conn: sqlite3.Connection, repo: str, limit: int = REPO_TASKS_LIMIT) -> list[Task]:
    """A repository's latest tasks, newest first."""
    query = f"select {', '.join(TASK_FIELDS)} from tasks where repo = ? order by id desc limit ?"  # noqa: S608
    conn.row_factory = sqlite3.Row
    return [task_from_row(row) for row in conn.execute(query, (repo, limit)).fetchall()]


def read_repo_tasks(database: Path, repo: str, limit: int = REPO_TASKS_LIMIT) -> list[Task]:
    """`repo_tasks` on a read-only connection to the database file (none yet: no tasks)."""
    if not database.is_file():
        return []
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return repo_tasks(conn, repo, limit)
    finally:
        conn.close()


async def list_repo_tasks(database: Path, repo: str, limit: int = REPO_TASKS_LIMIT) -> list[Task]:
    """`read_repo_tasks` off the event loop."""
    return await asyncio.to_thread(read_repo_tasks, database, repo, limit)
