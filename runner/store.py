"""The task store: every accepted task and every seen delivery, durable before we answer GitHub."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from config.database import SQLITE_PREFIX, Database
from runner import leases, migrate, task_listing
from runner.accept_group import AcceptGroup, accept_rows
from runner.log_shipping import STORED_TABLES, prune_sql
from runner.results import PHASES, Phase, PhaseStatus
from runner.retention import delivery_prune_sql
from runner.task import TASK_FIELDS, NewTask, Task, TaskBranch, TaskState, task_from_row

T = TypeVar("T")
TASK_COLUMNS = ", ".join(TASK_FIELDS)


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
class Effect:
    """Something a delivery does on GitHub once (a reply): what it is to be, when it was
    first begun, and its result once done ('' until then: perhaps done, perhaps not)."""

    delivery_id: str
    kind: str
    body: str
    result: str
    started_at: float
    fresh: bool  # begun by this call: no earlier try of the delivery got this far


def effect_of(row: Mapping[str, Any], fresh: bool) -> Effect:
    return Effect(
        row["delivery_id"], row["kind"], row["body"], row["result"], row["started_at"], fresh
    )


class TaskStore(Protocol):
    """The store's interface; SQLite by default, another database to scale out."""

    async def claim_delivery(self, delivery_id: str, event: str) -> bool: ...

    async def release_delivery(self, delivery_id: str) -> None: ...

    async def accept_delivery(self, delivery_id: str, event: str, payload: str) -> bool: ...

    async def inbox(self, state: InboxState) -> list[InboxEntry]: ...

    async def seen_deliveries(self, delivery_ids: set[str]) -> set[str]: ...

    async def inbox_entry(self, delivery_id: str) -> InboxEntry | None: ...

    async def pending_deliveries(self) -> list[tuple[str, int]]: ...

    async def settle_delivery(
        self, delivery_id: str, state: InboxState, *, attempts: int, outcome: str, reason: str
    ) -> None: ...

    async def task_for_delivery(self, delivery_id: str) -> Task | None: ...

    async def add_task(self, task: NewTask, delivery_id: str) -> Task: ...

    async def begin_effect(self, delivery_id: str, kind: str, body: str) -> Effect: ...

    async def finish_effect(self, delivery_id: str, kind: str, result: str) -> None: ...

    async def claimed_effects(self, kind: str, results: list[str]) -> set[str]: ...

    async def get(self, task_id: int) -> Task | None: ...

    async def latest_for_thread(self, repo: str, number: int) -> Task | None: ...

    async def thread_tasks(self, repo: str, number: int) -> list[Task]: ...

    async def with_state(self, state: TaskState) -> list[Task]: ...

    async def repo_tasks(self, repo: str, limit: int) -> list[Task]: ...
    async def state_counts(self) -> tuple[dict[str, int], float | None]: ...

    async def set_state(self, task_id: int, state: TaskState) -> Task | None: ...

    async def cancel_task(self, task_id: int) -> Task | None: ...

    async def first_refusal(self, repo: str, number: int, delivery_id: str) -> bool: ...

    async def bump_attempts(self, task_id: int) -> int: ...

    async def claim_next(self, owner: str, lease_seconds: float) -> Task | None: ...

    async def heartbeat(
        self, owner: str, task_ids: list[int], lease_seconds: float
    ) -> set[int]: ...

    async def finish_task(self, task_id: int, owner: str, state: TaskState) -> bool: ...

    async def take_back_expired(self, owner: str | None) -> list[Task]: ...

    async def append_log(self, task_id: int, start: int, data: bytes) -> None: ...

    async def log_chunks(self, task_id: int, start: int) -> list[tuple[int, bytes]]: ...

    async def log_size(self, task_id: int) -> int: ...

    async def save_patch(self, task_id: int, patch: bytes) -> None: ...

    async def patch(self, task_id: int) -> bytes | None: ...

    async def prune_stored_files(self, ended_before: float) -> int: ...

    async def prune_deliveries(self, before: float) -> int: ...

    async def request_cache_reset(self, repo: str) -> int: ...

    async def cache_resets_after(self, after: int) -> list[tuple[int, str]]: ...

    async def newest_cache_reset(self) -> int: ...

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

    async def record_commit(self, task_id: int, start_sha: str, commit_sha: str) -> None: ...

    async def usage(self, task_id: int) -> str | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def inbox_entry(row: Mapping[str, Any]) -> InboxEntry:
    """An inbox row as an entry."""
    return InboxEntry(
        row["delivery_id"], row["event"], row["payload"], InboxState(row["state"]),
        row["attempts"], row["outcome"], row["reason"],
    )  # fmt: skip


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
        migrate.upgrade(Database(f"{SQLITE_PREFIX}{self._path}"))
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=30)
        conn.execute("pragma journal_mode=wal")
        # FULL: a task the webhook acknowledged survives a power cut, not only a crash.
        conn.execute("pragma synchronous=full")
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

    async def pending_deliveries(self) -> list[tuple[str, int]]:
        """The ids (and tries so far) of the deliveries still to handle, oldest first; not
        their payloads, which the inbox reads when each one's turn comes."""
        sql = "select delivery_id, attempts from inbox where state = ? order by rowid"
        params = (InboxState.PENDING.value,)
        rows = await self._run(lambda: self.conn.execute(sql, params).fetchall())
        return [(str(row[0]), int(row[1])) for row in rows]

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

    async def begin_effect(self, delivery_id: str, kind: str, body: str) -> Effect:
        """Record that a delivery is about to do `kind` with `body`; what was recorded first
        wins, so a retry does what the first try meant to (not what it would decide now)."""

        def begin() -> Effect:
            fresh = self.conn.execute(
                "insert or ignore into delivery_effects (delivery_id, kind, body, started_at) "
                "values (?, ?, ?, ?)",
                (delivery_id, kind, body, self._clock()),
            ).rowcount
            row = self.conn.execute(
                "select * from delivery_effects where delivery_id = ? and kind = ?",
                (delivery_id, kind),
            ).fetchone()
            return effect_of(row, fresh == 1)

        return await self._run(begin)  # type: ignore[no-any-return]

    async def finish_effect(self, delivery_id: str, kind: str, result: str) -> None:
        """Record what a delivery's effect came to (a comment's id)."""
        await self._execute(
            "update delivery_effects set result = ? where delivery_id = ? and kind = ?",
            (result, delivery_id, kind),
        )

    async def claimed_effects(self, kind: str, results: list[str]) -> set[str]:
        """Which of these results some delivery's effect already holds."""
        if not results:
            return set()
        marks = ", ".join("?" * len(results))
        sql = f"select result from delivery_effects where kind = ? and result in ({marks})"  # noqa: S608 (marks only)
        rows = await self._run(lambda: self.conn.execute(sql, (kind, *results)).fetchall())
        return {str(row[0]) for row in rows}

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

    async def repo_tasks(self, repo: str, limit: int) -> list[Task]:
        """A repository's latest tasks, newest first, read beside the writer (WAL)."""
        return await task_listing.list_repo_tasks(self._path, repo, limit)

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
        """Put a task in `state`, whatever state it is in (tests, tools; a cancel is
        `cancel_task`)."""
        await self._execute(
            "update tasks set state = ?, updated_at = ? where id = ?",
            (state.value, self._clock(), task_id),
        )
        return await self.get(task_id)

    async def cancel_task(self, task_id: int) -> Task | None:
        """Cancel a task still queued or running, in one statement (a task that ends
        meanwhile keeps its end); the cancelled task, None when there was none to cancel.
        A running task keeps its lease: its worker records the end of its run."""

        def cancel() -> Task | None:
            row = self.conn.execute(
                f"update tasks set state = 'cancelled', updated_at = ? "  # noqa: S608
                f"where id = ? and {leases.ACTIVE} returning {TASK_COLUMNS}",
                (self._clock(), task_id),
            ).fetchone()
            return task_from_row(row) if row is not None else None

        return await self._run(cancel)  # type: ignore[no-any-return]

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[Task]:
        query = f"select {', '.join(TASK_FIELDS)} from tasks {where}"  # noqa: S608
        rows = await self._run(lambda: self.conn.execute(query, params).fetchall())
        return [task_from_row(row) for row in rows]

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

    async def claim_next(self, owner: str, lease_seconds: float) -> Task | None:
        """Start the oldest claimable task under `owner`'s lease; None when there is none.

        The store's one writer (BEGIN IMMEDIATE) makes the pick and the update atomic."""

        def claim() -> Task | None:
            now = self._clock()
            row = self.conn.execute(
                f"update tasks set state = 'running', lease_owner = ?, lease_until = ?, "  # noqa: S608
                f"updated_at = ? where id = (select t.id from tasks t where {leases.CLAIMABLE} "
                f"order by t.id limit 1) returning {TASK_COLUMNS}",
                (owner, now + lease_seconds, now),
            ).fetchone()
            return task_from_row(row) if row is not None else None

        return await self._run(claim)  # type: ignore[no-any-return]

    async def heartbeat(self, owner: str, task_ids: list[int], lease_seconds: float) -> set[int]:
        """Renew `owner`'s leases; which of `task_ids` still run under them (the others were
        cancelled, or taken back after a lapse)."""

        if not task_ids:
            return set()
        marks = ", ".join("?" * len(task_ids))

        def renew() -> set[int]:
            # Only the tasks that still run here: one whose end could not be recorded lapses.
            now = self._clock()
            held = f"lease_owner = ? and state = 'running' and id in ({marks})"
            sql = f"update tasks set lease_until = ? where {held} returning id"  # noqa: S608
            rows = self.conn.execute(sql, (now + lease_seconds, owner, *task_ids)).fetchall()
            return {int(row[0]) for row in rows}

        return await self._run(renew)  # type: ignore[no-any-return]

    async def finish_task(self, task_id: int, owner: str, state: TaskState) -> bool:
        """End `owner`'s run of a task in `state`; False when the task is no longer its own."""
        changed = await self._execute(
            f"update tasks set {leases.FINISH.format(state='?', now='?')} "  # noqa: S608
            "where id = ? and lease_owner = ?",
            (state.value, state.value, self._clock(), task_id, owner),
        )
        return changed == 1

    async def take_back_expired(self, owner: str | None) -> list[Task]:
        """Running tasks whose lease lapsed (or `owner`'s own, from before its restart):
        queued again once, then failed; the tasks as they are now."""

        def take_back() -> list[Task]:
            now = self._clock()
            expired = leases.EXPIRED.format(now="?", owner="?")
            rows = self.conn.execute(
                f"update tasks set {leases.TAKE_BACK.format(now='?')} where {expired} "  # noqa: S608
                f"returning {TASK_COLUMNS}",
                (now, now, owner),
            ).fetchall()
            return sorted((task_from_row(row) for row in rows), key=lambda t: t.id)

        return await self._run(take_back)  # type: ignore[no-any-return]

    async def append_log(self, task_id: int, start: int, data: bytes) -> None:
        """Keep a chunk of a task's log at its offset (see `runner.log_shipping`)."""
        await self._execute(
            "insert or ignore into task_logs (task_id, start, data) values (?, ?, ?)",
            (task_id, start, data),
        )

    async def log_chunks(self, task_id: int, start: int) -> list[tuple[int, bytes]]:
        """The chunks of a task's log from offset `start` on, in order."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select start, data from task_logs where task_id = ? and start >= ? order by start",
                (task_id, start),
            ).fetchall()
        )
        return [(int(row[0]), bytes(row[1])) for row in rows]

    async def log_size(self, task_id: int) -> int:
        """Where the stored log of a task ends."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select coalesce(max(start + length(data)), 0) from task_logs where task_id = ?",
                (task_id,),
            ).fetchall()
        )
        return int(rows[0][0])

    async def save_patch(self, task_id: int, patch: bytes) -> None:
        await self._execute(
            "insert into task_patches (task_id, patch) values (?, ?) "
            "on conflict(task_id) do update set patch = excluded.patch",
            (task_id, patch),
        )

    async def patch(self, task_id: int) -> bytes | None:
        rows = await self._run(
            lambda: self.conn.execute(
                "select patch from task_patches where task_id = ?", (task_id,)
            ).fetchall()
        )
        return bytes(rows[0][0]) if rows else None

    async def prune_stored_files(self, ended_before: float) -> int:
        """Drop the stored logs and patches of tasks that ended before `ended_before`; how many
        rows (log chunks and patches) went."""
        return sum([await self._execute(prune_sql(t, "?"), (ended_before,)) for t in STORED_TABLES])

    async def prune_deliveries(self, before: float) -> int:
        """Drop handled deliveries' inbox rows, and the ids and effects of deliveries settled
        before `before`; how many rows went."""
        return sum([await self._execute(sql, (before,)) for sql in delivery_prune_sql("?")])

    async def request_cache_reset(self, repo: str) -> int:
        """Ask every worker to drop a repository's cached environments; the request's id."""

        def request() -> int:
            cursor = self.conn.execute(
                "insert into cache_resets (repo, requested_at) values (?, ?)",
                (repo, self._clock()),
            )
            return int(cursor.lastrowid or 0)

        return int(await self._run(request))

    async def cache_resets_after(self, after: int) -> list[tuple[int, str]]:
        """The reset requests after id `after`, oldest first: (id, repository)."""
        rows = await self._run(
            lambda: self.conn.execute(
                "select id, repo from cache_resets where id > ? order by id", (after,)
            ).fetchall()
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    async def newest_cache_reset(self) -> int:
        """The newest reset request's id (0: none yet), for a worker to follow from."""
        rows = await self._run(
            lambda: self.conn.execute("select coalesce(max(id), 0) from cache_resets").fetchall()
        )
        return int(rows[0][0])

    async def first_refusal(self, repo: str, number: int, delivery_id: str) -> bool:
        """Whether this delivery is the thread's first refusal (one polite reply per thread);
        still True when the inbox tries the same delivery again."""

        def refuse() -> bool:
            self.conn.execute(
                "insert or ignore into refusals (repo, number, delivery_id) values (?, ?, ?)",
                (repo, number, delivery_id),
            )
            row = self.conn.execute(
                "select delivery_id from refusals where repo = ? and number = ?", (repo, number)
            ).fetchone()
            return bool(row[0] == delivery_id)

        return bool(await self._run(refuse))

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
                "select branch, pull_url, start_sha, commit_sha from task_branches "
                "where task_id = ?",
                (task_id,),
            ).fetchall()
        )
        return TaskBranch(*rows[0]) if rows else None

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

    async def record_commit(self, task_id: int, start_sha: str, commit_sha: str) -> None:
        """Keep the commit the task is about to push, and its parent (its branch was fixed)."""
        await self._execute(
            "update task_branches set start_sha = ?, commit_sha = ? where task_id = ?",
            (start_sha, commit_sha, task_id),
        )

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        await self._run(lambda: self.conn.execute("select 1").fetchone())

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
