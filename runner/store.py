"""The task store: every accepted task and every seen delivery, durable before we answer GitHub."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from runner.accept_group import AcceptGroup, accept_rows
from runner.results import PHASES, Phase, PhaseStatus

T = TypeVar("T")
# Columns added after the first release, created on open when a database predates them.
ADDED_COLUMNS = {
    "agent": "text",
    "model": "text",
    "context": "text",
    "best_of": "integer not null default 1",
}

SCHEMA = """
create table if not exists deliveries (
    id text primary key,
    event text not null,
    received_at real not null
);
create table if not exists tasks (
    id integer primary key autoincrement,
    repo text not null,
    installation_id integer not null,
    number integer not null,
    is_pull_request integer not null,
    title text not null,
    clone_url text not null,
    default_branch text not null,
    comment_id integer,
    comment_kind text not null,
    requester text not null,
    kind text not null,
    request text not null,
    head_ref text,
    head_sha text,
    thread_body text not null default '',
    delivery_id text not null,
    state text not null,
    created_at real not null,
    updated_at real not null,
    attempts integer not null default 0
);
create index if not exists tasks_thread on tasks (repo, number, id);
create index if not exists tasks_state on tasks (state);
create index if not exists tasks_delivery on tasks (delivery_id);
create table if not exists installations (
    id integer primary key,
    account text not null,
    updated_at real not null
);
create table if not exists installation_repos (
    installation_id integer not null,
    repo text not null,
    primary key (installation_id, repo)
);
create table if not exists phases (
    task_id integer not null,
    name text not null,
    status text not null,
    seconds real,
    note text not null default '',
    updated_at real not null,
    primary key (task_id, name)
);
create table if not exists agent_usage (
    task_id integer primary key,
    usage text not null
);
create table if not exists task_branches (
    task_id integer primary key,
    branch text not null,
    pull_url text
);
create table if not exists inbox (
    delivery_id text primary key,
    event text not null,
    payload text not null,
    state text not null,
    attempts integer not null default 0,
    outcome text,
    reason text not null default '',
    updated_at real not null
);
create index if not exists inbox_state on inbox (state);
create table if not exists refusals (
    repo text not null,
    number integer not null,
    primary key (repo, number)
);
"""


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (TaskState.QUEUED, TaskState.RUNNING)


class InboxState(StrEnum):
    """Where a stored delivery is: waiting to be handled, handled, or given up on."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class InboxEntry:
    """A verified delivery kept in the store until it has been handled."""

    delivery_id: str
    event: str
    payload: str
    state: InboxState
    attempts: int
    outcome: str | None
    reason: str


@dataclass(frozen=True)
class NewTask:
    """What an accepted request carries into the store."""

    repo: str
    installation_id: int
    number: int
    is_pull_request: bool
    title: str
    clone_url: str
    default_branch: str
    comment_id: int | None
    comment_kind: str
    requester: str
    kind: str
    request: str
    head_ref: str | None
    head_sha: str | None
    thread_body: str
    # The agent and model the requester picked (None: the repository's default).
    agent: str | None = field(default=None, kw_only=True)
    model: str | None = field(default=None, kw_only=True)
    # Where a review comment asked (JSON: path, lines, side, hunk); None for other requests.
    context: str | None = field(default=None, kw_only=True)
    # How many attempts the requester asked for (`--attempts N`; capped when the task runs).
    best_of: int = field(default=1, kw_only=True)


@dataclass(frozen=True)
class TaskBranch:
    """A task's branch, fixed the first time it is chosen, and its PR once that exists."""

    branch: str
    pull_url: str | None = None


@dataclass(frozen=True)
class Task(NewTask):
    """A stored task."""

    id: int
    delivery_id: str
    state: TaskState
    created_at: float
    updated_at: float


class TaskStore(Protocol):
    """The store's interface; SQLite by default, another database to scale out."""

    async def claim_delivery(self, delivery_id: str, event: str) -> bool: ...

    async def release_delivery(self, delivery_id: str) -> None: ...

    async def accept_delivery(self, delivery_id: str, event: str, payload: str) -> bool: ...

    async def inbox(self, state: InboxState) -> list[InboxEntry]: ...

    async def seen_deliveries(self, delivery_ids: set[str]) -> set[str]: ...

    async def inbox_entry(self, delivery_id: str) -> InboxEntry | None: ...

    async def settle_delivery(
        self, delivery_id: str, state: InboxState, *, attempts: int, outcome: str, reason: str
    ) -> None: ...

    async def task_for_delivery(self, delivery_id: str) -> Task | None: ...

    async def add_task(self, task: NewTask, delivery_id: str) -> Task: ...

    async def get(self, task_id: int) -> Task | None: ...

    async def latest_for_thread(self, repo: str, number: int) -> Task | None: ...

    async def thread_tasks(self, repo: str, number: int) -> list[Task]: ...

    async def with_state(self, state: TaskState) -> list[Task]: ...

    async def state_counts(self) -> tuple[dict[str, int], float | None]: ...

    async def set_state(self, task_id: int, state: TaskState) -> Task | None: ...

    async def first_refusal(self, repo: str, number: int) -> bool: ...

    async def bump_attempts(self, task_id: int) -> int: ...

    async def record_phase(self, task_id: int, phase: Phase) -> None: ...

    async def phases(self, task_id: int) -> list[Phase]: ...

    async def remember_installation(self, installation_id: int, account: str) -> None: ...

    async def set_installation_repos(
        self, installation_id: int, added: list[str], removed: list[str]
    ) -> None: ...

    async def forget_installation(self, installation_id: int) -> None: ...

    async def installation_repos(self, installation_id: int) -> list[str]: ...

    async def record_usage(self, task_id: int, usage: str) -> None: ...

    async def task_branch(self, task_id: int) -> TaskBranch | None: ...

    async def fix_branch(self, task_id: int, branch: str) -> str: ...

    async def record_pull(self, task_id: int, pull_url: str) -> None: ...

    async def usage(self, task_id: int) -> str | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def inbox_entry(row: sqlite3.Row) -> InboxEntry:
    """An inbox row as an entry."""
    return InboxEntry(
        row["delivery_id"], row["event"], row["payload"], InboxState(row["state"]),
        row["attempts"], row["outcome"], row["reason"],
    )  # fmt: skip


TASK_FIELDS = [f.name for f in dataclasses.fields(Task)]


class SQLiteTaskStore:
    """SQLite in WAL mode; one thread owns the connection, so calls never block the loop."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self._path = path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gantry-store")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._accepting = AcceptGroup(closed=True)

    @classmethod
    async def open(cls, path: Path) -> SQLiteTaskStore:
        """Open (creating if needed) the database file."""
        store = cls(path)
        await asyncio.get_running_loop().run_in_executor(store._executor, store._connect)
        return store

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=30)
        conn.execute("pragma journal_mode=wal")
        # FULL: a task the webhook acknowledged survives a power cut, not only a crash.
        conn.execute("pragma synchronous=full")
        conn.executescript(SCHEMA)
        have = {row[1] for row in conn.execute("pragma table_info(tasks)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                conn.execute(f"alter table tasks add column {name} {kind}")
        conn.row_factory = sqlite3.Row
        self._conn = conn

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the store's thread, committed together with whatever else is
        waiting (group commit): one fsync serves a burst of deliveries."""
        if self._conn is None:
            raise RuntimeError("the task store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((lambda: fn(*args), future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcomes = await loop.run_in_executor(self._executor, self._apply, batch)
                except Exception as exc:  # the commit itself failed (disk full, I/O error)
                    outcomes = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False

    def _apply(self, batch: list[tuple[Callable[[], Any], Any]]) -> list[tuple[bool, Any]]:
        """One transaction; a savepoint per operation so one failure undoes only itself."""
        outcomes: list[tuple[bool, Any]] = []
        conn = self.conn
        conn.execute("begin immediate")
        try:
            for op, _ in batch:
                conn.execute("savepoint op")
                try:
                    outcomes.append((True, op()))
                    conn.execute("release op")
                except Exception as exc:  # handed to the caller's future, never lost
                    conn.execute("rollback to op")
                    conn.execute("release op")
                    outcomes.append((False, exc))
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        return outcomes

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the task store is closed")
        return self._conn

    async def claim_delivery(self, delivery_id: str, event: str) -> bool:
        """Record a delivery; False when it was seen before (a redelivery or a duplicate)."""
        return bool(await self._run(self._claim, delivery_id, event))

    def _claim(self, delivery_id: str, event: str) -> bool:
        cursor = self.conn.execute(
            "insert or ignore into deliveries (id, event, received_at) values (?, ?, ?)",
            (delivery_id, event, self._clock()),
        )
        return cursor.rowcount == 1

    async def release_delivery(self, delivery_id: str) -> None:
        """Forget a delivery we could not handle, so GitHub's redelivery is not ignored."""
        await self._execute("delete from deliveries where id = ?", (delivery_id,))

    async def accept_delivery(self, delivery_id: str, event: str, payload: str) -> bool:
        """Claim a delivery and keep it in the inbox, in one commit; False when seen before.
        Accepts waiting together are written as one group (`runner/accept_group.py`)."""
        row = (delivery_id, event, payload)
        group = self._accepting
        index = group.join(row)
        if index is None:
            group = AcceptGroup([row])
            group.result = asyncio.ensure_future(self._run(self._accept_group, group))
            self._accepting, index = group, 0
        if group.result is None:
            raise RuntimeError("an accept group without its commit")
        return (await asyncio.shield(group.result))[index]

    def _accept_group(self, group: AcceptGroup) -> list[bool]:
        return accept_rows(self.conn, group.take(), self._clock(), InboxState.PENDING.value)

    async def seen_deliveries(self, delivery_ids: set[str]) -> set[str]:
        """Which of these delivery ids the store holds."""
        ids = sorted(delivery_ids)
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = f"select id from deliveries where id in ({marks})"  # noqa: S608 (marks only)
            rows = await self._run(self._fetch, sql, chunk)
            seen.update(row[0] for row in rows)
        return seen

    def _fetch(self, sql: str, params: list[str]) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    async def inbox(self, state: InboxState) -> list[InboxEntry]:
        """The inbox's deliveries in `state`, oldest first."""
        return await self._inbox_rows("where state = ? order by rowid", (state.value,))

    async def inbox_entry(self, delivery_id: str) -> InboxEntry | None:
        rows = await self._inbox_rows("where delivery_id = ?", (delivery_id,))
        return rows[0] if rows else None

    async def _inbox_rows(self, where: str, params: tuple[Any, ...]) -> list[InboxEntry]:
        sql = f"select * from inbox {where}"  # noqa: S608 (the clause is ours)
        rows = await self._run(lambda: self.conn.execute(sql, params).fetchall())
        return [inbox_entry(row) for row in rows]

    async def settle_delivery(
        self, delivery_id: str, state: InboxState, *, attempts: int, outcome: str, reason: str
    ) -> None:
        """Record where a delivery stands; a handled one no longer keeps its payload."""
        await self._execute(
            "update inbox set state = ?, attempts = ?, outcome = ?, reason = ?, updated_at = ?, "
            "payload = case when ? then '' else payload end where delivery_id = ?",
            (
                state.value, attempts, outcome, reason, self._clock(),
                state is InboxState.DONE, delivery_id,
            ),
        )  # fmt: skip

    async def task_for_delivery(self, delivery_id: str) -> Task | None:
        """The task a delivery already created, if any (so a retry never makes a second)."""
        rows = await self._select("where delivery_id = ? order by id limit 1", (delivery_id,))
        return rows[0] if rows else None

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one statement; the number of rows it changed."""
        return int(await self._run(lambda: self.conn.execute(sql, params).rowcount))

    async def add_task(self, task: NewTask, delivery_id: str) -> Task:
        """Insert a queued task."""
        return await self._run(self._add, task, delivery_id)  # type: ignore[no-any-return]

    def _add(self, task: NewTask, delivery_id: str) -> Task:
        now = self._clock()
        values = dataclasses.asdict(task) | {
            "delivery_id": delivery_id,
            "state": TaskState.QUEUED,
            "created_at": now,
            "updated_at": now,
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cursor = self.conn.execute(
            f"insert into tasks ({columns}) values ({marks})",  # noqa: S608 (names are ours)
            tuple(values.values()),
        )
        row_id = cursor.lastrowid
        if row_id is None:
            raise RuntimeError("SQLite returned no row id")
        return Task(**values, id=row_id)

    async def get(self, task_id: int) -> Task | None:
        rows = await self._select("where id = ?", (task_id,))
        return rows[0] if rows else None

    async def latest_for_thread(self, repo: str, number: int) -> Task | None:
        rows = await self._select(
            "where repo = ? and number = ? order by id desc limit 1", (repo, number)
        )
        return rows[0] if rows else None

    async def thread_tasks(self, repo: str, number: int) -> list[Task]:
        """Every task on an issue or PR, oldest first."""
        return await self._select("where repo = ? and number = ? order by id", (repo, number))

    async def with_state(self, state: TaskState) -> list[Task]:
        return await self._select("where state = ? order by id", (state.value,))

    async def state_counts(self) -> tuple[dict[str, int], float | None]:
        """Tasks per state, and when the oldest queued one was created (for metrics): two
        queries on the state index, cheap enough for every scrape."""

        def count() -> tuple[dict[str, int], float | None]:
            rows = self.conn.execute("select state, count(*) from tasks group by state")
            oldest = self.conn.execute(
                "select min(created_at) from tasks where state = ?", (TaskState.QUEUED.value,)
            ).fetchone()[0]
            return {str(state): int(n) for state, n in rows.fetchall()}, oldest

        result: tuple[dict[str, int], float | None] = await self._run(count)
        return result

    async def set_state(self, task_id: int, state: TaskState) -> Task | None:
        await self._execute(
            "update tasks set state = ?, updated_at = ? where id = ?",
            (state.value, self._clock(), task_id),
        )
        return await self.get(task_id)

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[Task]:
        query = f"select {', '.join(TASK_FIELDS)} from tasks {where}"  # noqa: S608
        rows = await self._run(lambda: self.conn.execute(query, params).fetchall())
        return [row_to_task(row) for row in rows]

    async def record_phase(self, task_id: int, phase: Phase) -> None:
        """Keep a phase's latest status and timing."""
        await self._execute(
            "insert into phases (task_id, name, status, seconds, note, updated_at) "
            "values (?, ?, ?, ?, ?, ?) on conflict(task_id, name) do update set "
            "status = excluded.status, seconds = excluded.seconds, note = excluded.note, "
            "updated_at = excluded.updated_at",
            (task_id, phase.name, phase.status.value, phase.seconds, phase.note, self._clock()),
        )

    async def phases(self, task_id: int) -> list[Phase]:
        """A task's phases in pipeline order."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select name, status, seconds, note from phases where task_id = ?", (task_id,)
            ).fetchall()
        )
        found = {r[0]: Phase(r[0], PhaseStatus(r[1]), r[2], r[3]) for r in rows}
        return [found[name] for name in PHASES if name in found]

    async def bump_attempts(self, task_id: int) -> int:
        """Count one more interrupted start of a task; the new count."""

        def bump() -> int:
            self.conn.execute("update tasks set attempts = attempts + 1 where id = ?", (task_id,))
            row = self.conn.execute("select attempts from tasks where id = ?", (task_id,))
            found = row.fetchone()
            return int(found[0]) if found else 0

        return int(await self._run(bump))

    async def first_refusal(self, repo: str, number: int) -> bool:
        """True the first time a thread is refused: one polite reply per thread."""
        changed = await self._execute(
            "insert or ignore into refusals (repo, number) values (?, ?)", (repo, number)
        )
        return changed == 1

    async def remember_installation(self, installation_id: int, account: str) -> None:
        await self._execute(
            "insert into installations (id, account, updated_at) values (?, ?, ?) "
            "on conflict(id) do update set account = excluded.account, "
            "updated_at = excluded.updated_at",
            (installation_id, account, self._clock()),
        )

    async def set_installation_repos(
        self, installation_id: int, added: list[str], removed: list[str]
    ) -> None:
        def change() -> None:
            self.conn.executemany(
                "insert or ignore into installation_repos values (?, ?)",
                [(installation_id, repo) for repo in added],
            )
            self.conn.executemany(
                "delete from installation_repos where installation_id = ? and repo = ?",
                [(installation_id, repo) for repo in removed],
            )

        await self._run(change)

    async def forget_installation(self, installation_id: int) -> None:
        def forget() -> None:
            self.conn.execute("delete from installations where id = ?", (installation_id,))
            self.conn.execute(
                "delete from installation_repos where installation_id = ?", (installation_id,)
            )

        await self._run(forget)

    async def installation_repos(self, installation_id: int) -> list[str]:
        rows = await self._run(
            lambda: self.conn.execute(
                "select repo from installation_repos where installation_id = ? order by repo",
                (installation_id,),
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def record_usage(self, task_id: int, usage: str) -> None:
        """Keep what a task's agent spent (JSON from the model gateway)."""
        await self._execute(
            "insert into agent_usage (task_id, usage) values (?, ?) "
            "on conflict(task_id) do update set usage = excluded.usage",
            (task_id, usage),
        )

    async def usage(self, task_id: int) -> str | None:
        """What a task's agent spent, as recorded; None when it used no model."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select usage from agent_usage where task_id = ?", (task_id,)
            ).fetchall()
        )
        return str(rows[0][0]) if rows else None

    async def task_branch(self, task_id: int) -> TaskBranch | None:
        """The branch a task publishes to, and its PR, as recorded so far."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select branch, pull_url from task_branches where task_id = ?", (task_id,)
            ).fetchall()
        )
        return TaskBranch(rows[0][0], rows[0][1]) if rows else None

    async def fix_branch(self, task_id: int, branch: str) -> str:
        """Keep the task's branch name; the one kept first wins (a retry gets it back)."""

        def fix() -> str:
            self.conn.execute(
                "insert or ignore into task_branches (task_id, branch) values (?, ?)",
                (task_id, branch),
            )
            row = self.conn.execute(
                "select branch from task_branches where task_id = ?", (task_id,)
            ).fetchone()
            return str(row[0])

        return str(await self._run(fix))

    async def record_pull(self, task_id: int, pull_url: str) -> None:
        """Keep the task's PR the moment it exists (its branch was fixed before)."""
        await self._execute(
            "update task_branches set pull_url = ? where task_id = ?", (pull_url, task_id)
        )

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        await self._run(lambda: self.conn.execute("select 1").fetchone())

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


def row_to_task(row: sqlite3.Row) -> Task:
    """A database row as a `Task`."""
    values = dict(row)
    values["is_pull_request"] = bool(values["is_pull_request"])
    values["state"] = TaskState(values["state"])
    return Task(**values)
