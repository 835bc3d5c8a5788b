"""Schema migrations: an earlier version's database keeps its data, and processes that start
at once migrate it once between them, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from config.database import Database
from runner import migrate
from runner.results import Phase, PhaseStatus
from runner.store import InboxState, SQLiteTaskStore
from runner.task import TaskBranch, TaskState
from tests.store_fixtures import database
from tests.test_task_store import TASK

__all__ = ["database"]  # a fixture, used by name
# Made by Gantry before migrations existed (runner/store.py of commit 2132a7c, and of 3aafc52
# which added `best_of`, the second task's 3 there): two tasks on octo/legacy#12 (one
# succeeded, one queued), a phase, usage, a branch with its PR, a pending delivery, an
# installation with a repository, and a refusal.
DATA = Path(__file__).parent / "data"
BEFORE_MIGRATIONS = {
    "gantry-before-migrations.db": 1,
    "gantry-before-migrations-best-of.db": 3,
}


@pytest.mark.parametrize(("made_by", "best_of"), BEFORE_MIGRATIONS.items())
async def test_a_database_from_before_migrations_keeps_its_data(
    tmp_path: Path, made_by: str, best_of: int
) -> None:
    path = tmp_path / "gantry.db"
    shutil.copy(DATA / made_by, path)
    assert migrate.current(Database(f"sqlite:///{path}")) is None
    store = await SQLiteTaskStore.open(path)
    try:
        tasks = await store.thread_tasks("octo/legacy", 12)
        assert [(t.id, t.state, t.agent, t.head_sha, t.best_of) for t in tasks] == [
            (1, TaskState.SUCCEEDED, "codex", "a" * 40, 1),
            (2, TaskState.QUEUED, "codex", "a" * 40, best_of),
        ]
        assert await store.phases(1) == [Phase("agent", PhaseStatus.DONE, 1.5, "done")]
        assert await store.usage(1) == '{"requests": 3}'
        expected = TaskBranch("gantry/12-fix-it", "http://forge/octo/legacy/pull/13")
        assert await store.task_branch(1) == expected
        assert [e.delivery_id for e in await store.inbox(InboxState.PENDING)] == ["d-3"]
        assert await store.seen_deliveries({"d-1", "d-3"}) == {"d-3"}
        assert await store.installation_repos(7) == ["octo/legacy"]
        assert not await store.first_refusal("octo/legacy", 5, "d-5")
        added = await store.add_task(TASK, "d-4")
        assert added.id == 3
    finally:
        await store.close()
    assert migrate.current(Database(f"sqlite:///{path}")) == migrate.head()


MIGRATE = "import sys; from config.database import Database; from runner import migrate; " \
    "migrate.upgrade(Database(sys.argv[1]))"  # fmt: skip


async def test_processes_starting_at_once_migrate_once(database: Database) -> None:
    starts = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", MIGRATE, database.url)
        for _ in range(4)
    ]
    codes = await asyncio.gather(*(process.wait() for process in starts))
    assert codes == [0, 0, 0, 0]
    assert migrate.current(database) == migrate.head()
    migrate.upgrade(database)  # at head already: nothing to do, nothing fails
    assert migrate.current(database) == migrate.head()
