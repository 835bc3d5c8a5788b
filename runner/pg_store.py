"""The task store on PostgreSQL, for several processes on several hosts (psycopg 3, a pool)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from config.database import Database
from runner import leases, migrate
from runner.log_shipping import STORED_TABLES, prune_sql
from runner.results import PHASES, Phase, PhaseStatus
from runner.retention import delivery_prune_sql
from runner.store import Effect, InboxEntry, InboxState, effect_of, inbox_entry
from runner.task import TASK_FIELDS, NewTask, Task, TaskBranch, TaskState, task_from_row

POOL_SIZE = 10
# The database server's clock: leases are compared on one clock whichever host wrote them.
NOW = "extract(epoch from clock_timestamp())::float8"
# Workers LISTEN here; a new task, a finished one (its thread's next may start) or one taken
# back NOTIFY it, so that an idle worker claims at once instead of at its next poll.
CHANNEL = "gantry_tasks"
TASK_COLUMNS = ", ".join(TASK_FIELDS)
Row = dict[str, Any]


class PostgresTaskStore:
    """The same interface as the SQLite store; each call is one statement or one transaction."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Row]], clock: Callable[[], float]):
        self.pool = pool
        self._clock = clock

    @classmethod
    async def open(
        cls, database: Database, clock: Callable[[], float] = time.time
    ) -> PostgresTaskStore:
        """Migrate the schema (one process at a time), then open the pool."""
        await asyncio.to_thread(migrate.upgrade, database)

        async def check(conn: AsyncConnection[Row]) -> None:
            """Lend no connection the server closed (a restart): each is checked (one round
            trip), and the first dead one has every idle one checked and replaced at once."""
            try:
                await AsyncConnectionPool.check_connection(conn)
            except psycopg.Error:
                # Else the pool would find the dead ones one by one, waiting longer after
                # each (1 s, 2 s, 4 s...): a pool of them outlasts a caller's timeout.
                await pool.check()
                raise

        pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
            database.conninfo,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=check,
        )
        await pool.open(wait=True)
        return cls(pool, clock)

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

    async def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def claim_delivery(self, delivery_id: str, event: str) -> bool:
        """Record a delivery; False when it was seen before (a redelivery or a duplicate)."""
        return (
            await self._count(
                "insert into deliveries (id, event, received_at) values (%s, %s, %s) "
                "on conflict do nothing",
                (delivery_id, event, self._clock()),
            )
            == 1
        )

    async def release_delivery(self, delivery_id: str) -> None:
        await self._count("delete from deliveries where id = %s", (delivery_id,))

    async def accept_delivery(self, delivery_id: str, event: str, payload: str) -> bool:
        """Claim a delivery and keep it in the inbox, in one statement (one round trip, one
        commit); False when seen before."""
        now = self._clock()
        rows = await self._rows(
            "with claimed as (insert into deliveries (id, event, received_at) "
            "values (%s, %s, %s) on conflict do nothing returning id) "
            "insert into inbox (delivery_id, event, payload, state, updated_at) "
            "select id, %s, %s, %s, %s from claimed returning delivery_id",
            (delivery_id, event, now, event, payload, InboxState.PENDING.value, now),
        )
        return bool(rows) or await self._revive_failed(delivery_id, payload, now)

    async def _revive_failed(self, delivery_id: str, payload: str, now: float) -> bool:
        """A delivery the inbox kept as failed, pending again with the payload it came back
        with (the operator redelivered it once the cause was fixed); False for any other."""
        count = await self._count(
            "update inbox set state = %s, attempts = 0, outcome = '', reason = '', "
            "payload = %s, updated_at = %s where delivery_id = %s and state = %s",
            (InboxState.PENDING.value, payload, now, delivery_id, InboxState.FAILED.value),
        )
        return count > 0

    async def seen_deliveries(self, delivery_ids: set[str]) -> set[str]:
        rows = await self._rows(
            "select id from deliveries where id = any(%s)", (sorted(delivery_ids),)
        )
        return {row["id"] for row in rows}

    async def inbox(self, state: InboxState) -> list[InboxEntry]:
        """The inbox's deliveries in `state`, oldest first."""
        rows = await self._rows("select * from inbox where state = %s order by seq", (state.value,))
        return [inbox_entry(row) for row in rows]

    async def inbox_entry(self, delivery_id: str) -> InboxEntry | None:
        rows = await self._rows("select * from inbox where delivery_id = %s", (delivery_id,))
        return inbox_entry(rows[0]) if rows else None

    async def pending_deliveries(self) -> list[tuple[str, int]]:
        """The ids (and tries so far) of the deliveries still to handle, oldest first."""
        rows = await self._rows(
            "select delivery_id, attempts from inbox where state = %s order by seq",
            (InboxState.PENDING.value,),
        )
        return [(str(row["delivery_id"]), int(row["attempts"])) for row in rows]

    async def settle_delivery(
        self, delivery_id: str, state: InboxState, *, attempts: int, outcome: str, reason: str
    ) -> None:
        """Record where a delivery stands; a handled one no longer keeps its payload."""
        await self._count(
            "update inbox set state = %s, attempts = %s, outcome = %s, reason = %s, "
            "updated_at = %s, payload = case when %s then '' else payload end "
            "where delivery_id = %s",
            (
                state.value, attempts, outcome, reason, self._clock(),
                state is InboxState.DONE, delivery_id,
            ),
        )  # fmt: skip

    async def _tasks(self, where: str, params: tuple[Any, ...] = ()) -> list[Task]:
        rows = await self._rows(f"select {TASK_COLUMNS} from tasks {where}", params)  # noqa: S608
        return [task_from_row(row) for row in rows]

    async def task_for_delivery(self, delivery_id: str) -> Task | None:
        found = await self._tasks("where delivery_id = %s order by id limit 1", (delivery_id,))
        return found[0] if found else None

    async def begin_effect(self, delivery_id: str, kind: str, body: str) -> Effect:
        """Record that a delivery is about to do `kind` with `body`; what was recorded first
        wins, so a retry does what the first try meant to (not what it would decide now)."""
        rows = await self._rows(
            "with added as (insert into delivery_effects (delivery_id, kind, body, started_at) "
            "values (%s, %s, %s, %s) on conflict do nothing returning *) "
            "select *, true as fresh from added union all "
            "select *, false as fresh from delivery_effects where delivery_id = %s and kind = %s",
            (delivery_id, kind, body, self._clock(), delivery_id, kind),
        )
        if not rows:  # a concurrent try inserted it after this statement's snapshot
            rows = await self._rows(
                "select *, false as fresh from delivery_effects "
                "where delivery_id = %s and kind = %s",
                (delivery_id, kind),
            )
        return effect_of(rows[0], bool(rows[0]["fresh"]))

    async def finish_effect(self, delivery_id: str, kind: str, result: str) -> None:
        """Record what a delivery's effect came to (a comment's id)."""
        await self._count(
            "update delivery_effects set result = %s where delivery_id = %s and kind = %s",
            (result, delivery_id, kind),
        )

    async def claimed_effects(self, kind: str, results: list[str]) -> set[str]:
        """Which of these results some delivery's effect already holds."""
        rows = await self._rows(
            "select result from delivery_effects where kind = %s and result = any(%s)",
            (kind, results),
        )
        return {str(row["result"]) for row in rows}

    async def add_task(self, task: NewTask, delivery_id: str) -> Task:
        """Insert a queued task."""
        now = self._clock()
        values = dataclasses.asdict(task) | {
            "delivery_id": delivery_id,
            "state": TaskState.QUEUED.value,
            "created_at": now,
            "updated_at": now,
        }
        values["is_pull_request"] = int(task.is_pull_request)
        columns = ", ".join(values)
        marks = ", ".join("%s" for _ in values)
        rows = await self._rows(
            f"insert into tasks ({columns}) values ({marks}) returning {TASK_COLUMNS}",  # noqa: S608
            tuple(values.values()),
        )
        return task_from_row(rows[0])

    async def get(self, task_id: int) -> Task | None:
        found = await self._tasks("where id = %s", (task_id,))
        return found[0] if found else None

    async def latest_for_thread(self, repo: str, number: int) -> Task | None:
        found = await self._tasks(
            "where repo = %s and number = %s order by id desc limit 1", (repo, number)
        )
        return found[0] if found else None

    async def thread_tasks(self, repo: str, number: int) -> list[Task]:
        return await self._tasks("where repo = %s and number = %s order by id", (repo, number))

    async def with_state(self, state: TaskState) -> list[Task]:
        return await self._tasks("where state = %s order by id", (state.value,))

    async def repo_tasks(self, repo: str, limit: int) -> list[Task]:
        """A repository's latest tasks, newest first."""
        return await self._tasks("where repo = %s order by id desc limit %s", (repo, limit))

    async def set_state(self, task_id: int, state: TaskState) -> Task | None:
        """Put a task in `state`, whatever state it is in (tests, tools; a cancel is
        `cancel_task`)."""
        rows = await self._rows(
            f"update tasks set state = %s, updated_at = %s where id = %s "  # noqa: S608
            f"returning {TASK_COLUMNS}",
            (state.value, self._clock(), task_id),
        )
        return task_from_row(rows[0]) if rows else None

    async def cancel_task(self, task_id: int) -> Task | None:
        """Cancel a task still queued or running, in one statement (a task that ends
        meanwhile keeps its end); the cancelled task, None when there was none to cancel.
        A running task keeps its lease: its worker records the end of its run."""
        rows = await self._rows(
            f"update tasks set state = 'cancelled', updated_at = %s "  # noqa: S608
            f"where id = %s and {leases.ACTIVE} returning {TASK_COLUMNS}",
            (self._clock(), task_id),
        )
        return task_from_row(rows[0]) if rows else None

    async def record_phase(self, task_id: int, phase: Phase) -> None:
        """Keep a phase's latest status and timing."""
        await self._count(
            "insert into phases (task_id, name, status, seconds, note, updated_at) "
            "values (%s, %s, %s, %s, %s, %s) on conflict (task_id, name) do update set "
            "status = excluded.status, seconds = excluded.seconds, note = excluded.note, "
            "updated_at = excluded.updated_at",
            (task_id, phase.name, phase.status.value, phase.seconds, phase.note, self._clock()),
        )

    async def phases(self, task_id: int) -> list[Phase]:
        """A task's phases in pipeline order."""
        rows = await self._rows(
            "select name, status, seconds, note from phases where task_id = %s", (task_id,)
        )
        found = {
            r["name"]: Phase(r["name"], PhaseStatus(r["status"]), r["seconds"], r["note"])
            for r in rows
        }
        return [found[name] for name in PHASES if name in found]

    async def bump_attempts(self, task_id: int) -> int:
        """Count one more interrupted start of a task; the new count."""
        rows = await self._rows(
            "update tasks set attempts = attempts + 1 where id = %s returning attempts", (task_id,)
        )
        return int(rows[0]["attempts"]) if rows else 0

    async def claim_next(self, owner: str, lease_seconds: float) -> Task | None:
        """Start the oldest claimable task under `owner`'s lease; None when there is none.

        SKIP LOCKED: workers that claim at once each get a different task, without waiting."""
        rows = await self._rows(
            f"with next as (select t.id as next_id from tasks t where {leases.CLAIMABLE} "  # noqa: S608
            f"order by t.id limit 1 for update skip locked) update tasks set "
            f"state = 'running', lease_owner = %s, lease_until = {NOW} + %s, "
            f"updated_at = {NOW} from next where id = next_id returning {TASK_COLUMNS}",
            (owner, lease_seconds),
        )
        return task_from_row(rows[0]) if rows else None

    async def heartbeat(self, owner: str, task_ids: list[int], lease_seconds: float) -> set[int]:
        """Renew `owner`'s leases of `task_ids` (only those: one whose end could not be
        recorded lapses); which of them still run under them."""
        if not task_ids:
            return set()
        rows = await self._rows(
            f"update tasks set lease_until = {NOW} + %s where lease_owner = %s "  # noqa: S608
            "and state = 'running' and id = any(%s) returning id",
            (lease_seconds, owner, list(task_ids)),
        )
        return {int(row["id"]) for row in rows}

    async def finish_task(self, task_id: int, owner: str, state: TaskState) -> bool:
        """End `owner`'s run of a task in `state`; False when the task is no longer its own."""
        changed = await self._count(
            f"update tasks set {leases.FINISH.format(state='%s', now='%s')} "  # noqa: S608
            "where id = %s and lease_owner = %s",
            (state.value, state.value, self._clock(), task_id, owner),
        )
        if changed == 1:
            await self._count(f"notify {CHANNEL}")
        return changed == 1

    async def take_back_expired(self, owner: str | None) -> list[Task]:
        """Running tasks whose lease lapsed (or `owner`'s own, from before its restart):
        queued again once, then failed; the tasks as they are now."""
        expired = leases.EXPIRED.format(now=NOW, owner="%s")
        rows = await self._rows(
            f"update tasks set {leases.TAKE_BACK.format(now=NOW)} where {expired} "  # noqa: S608
            f"returning {TASK_COLUMNS}",
            (owner,),
        )
        if rows:
            await self._count(f"notify {CHANNEL}")
        return sorted((task_from_row(row) for row in rows), key=lambda t: t.id)

    async def state_counts(self) -> tuple[dict[str, int], float | None]:
        """Tasks per state, and when the oldest queued one was created (for metrics)."""
        rows = await self._rows("select state, count(*) as n from tasks group by state")
        oldest = await self._rows(
            "select min(created_at) as oldest from tasks where state = %s",
            (TaskState.QUEUED.value,),
        )
        return {str(row["state"]): int(row["n"]) for row in rows}, oldest[0]["oldest"]

    async def append_log(self, task_id: int, start: int, data: bytes) -> None:
        """Keep a chunk of a task's log at its offset (see `runner.log_shipping`)."""
        await self._count(
            "insert into task_logs (task_id, start, data) values (%s, %s, %s) "
            "on conflict do nothing",
            (task_id, start, data),
        )

    async def log_chunks(self, task_id: int, start: int) -> list[tuple[int, bytes]]:
        rows = await self._rows(
            "select start, data from task_logs where task_id = %s and start >= %s order by start",
            (task_id, start),
        )
        return [(int(row["start"]), bytes(row["data"])) for row in rows]

    async def log_size(self, task_id: int) -> int:
        rows = await self._rows(
            "select coalesce(max(start + length(data)), 0) as size from task_logs "
            "where task_id = %s",
            (task_id,),
        )
        return int(rows[0]["size"])

    async def save_patch(self, task_id: int, patch: bytes) -> None:
        await self._count(
            "insert into task_patches (task_id, patch) values (%s, %s) "
            "on conflict (task_id) do update set patch = excluded.patch",
            (task_id, patch),
        )

    async def patch(self, task_id: int) -> bytes | None:
        rows = await self._rows("select patch from task_patches where task_id = %s", (task_id,))
        return bytes(rows[0]["patch"]) if rows else None

    async def prune_stored_files(self, ended_before: float) -> int:
        """Drop the stored logs and patches of tasks that ended before `ended_before`; how many
        rows (log chunks and patches) went."""
        return sum([await self._count(prune_sql(t, "%s"), (ended_before,)) for t in STORED_TABLES])

    async def prune_deliveries(self, before: float) -> int:
        """Drop handled deliveries' inbox rows, and the ids and effects of deliveries settled
        before `before`; how many rows went."""
        return sum([await self._count(sql, (before,)) for sql in delivery_prune_sql("%s")])

    async def request_cache_reset(self, repo: str) -> int:
        """Ask every worker to drop a repository's cached environments; the request's id."""
        rows = await self._rows(
            "insert into cache_resets (repo, requested_at) values (%s, %s) returning id",
            (repo, self._clock()),
        )
        return int(rows[0]["id"])

    async def cache_resets_after(self, after: int) -> list[tuple[int, str]]:
        """The reset requests after id `after`, oldest first: (id, repository)."""
        rows = await self._rows(
            "select id, repo from cache_resets where id > %s order by id", (after,)
        )
        return [(int(row["id"]), str(row["repo"])) for row in rows]

    async def newest_cache_reset(self) -> int:
        """The newest reset request's id (0: none yet), for a worker to follow from."""
        rows = await self._rows("select coalesce(max(id), 0) as id from cache_resets")
        return int(rows[0]["id"])

    async def first_refusal(self, repo: str, number: int, delivery_id: str) -> bool:
        """Whether this delivery is the thread's first refusal (one polite reply per thread);
        still True when the inbox tries the same delivery again."""
        rows = await self._rows(
            "with added as (insert into refusals (repo, number, delivery_id) "
            "values (%s, %s, %s) on conflict do nothing returning delivery_id) "
            "select delivery_id from added union all "
            "select delivery_id from refusals where repo = %s and number = %s",
            (repo, number, delivery_id, repo, number),
        )
        return bool(rows) and rows[0]["delivery_id"] == delivery_id

    async def remember_installation(self, installation_id: int, account: str) -> None:
        await self._count(
            "insert into installations (id, account, updated_at) values (%s, %s, %s) "
            "on conflict (id) do update set account = excluded.account, "
            "updated_at = excluded.updated_at",
            (installation_id, account, self._clock()),
        )

    async def set_installation_repos(
        self, installation_id: int, added: list[str], removed: list[str]
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cursor = conn.cursor()
            await cursor.executemany(
                "insert into installation_repos values (%s, %s) on conflict do nothing",
                [(installation_id, repo) for repo in added],
            )
            await cursor.executemany(
                "delete from installation_repos where installation_id = %s and repo = %s",
                [(installation_id, repo) for repo in removed],
            )

    async def forget_installation(self, installation_id: int) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("delete from installations where id = %s", (installation_id,))
            await conn.execute(
                "delete from installation_repos where installation_id = %s", (installation_id,)
            )

    async def installation_repos(self, installation_id: int) -> list[str]:
        rows = await self._rows(
            "select repo from installation_repos where installation_id = %s order by repo",
            (installation_id,),
        )
        return [row["repo"] for row in rows]

    async def record_usage(self, task_id: int, usage: str) -> None:
        """Keep what a task's agent spent (JSON from the model gateway)."""
        await self._count(
            "insert into agent_usage (task_id, usage) values (%s, %s) "
            "on conflict (task_id) do update set usage = excluded.usage",
            (task_id, usage),
        )

    async def usage(self, task_id: int) -> str | None:
        rows = await self._rows("select usage from agent_usage where task_id = %s", (task_id,))
        return str(rows[0]["usage"]) if rows else None

    async def task_branch(self, task_id: int) -> TaskBranch | None:
        rows = await self._rows(
            "select branch, pull_url, start_sha, commit_sha from task_branches where task_id = %s",
            (task_id,),
        )
        return TaskBranch(**rows[0]) if rows else None

    async def fix_branch(self, task_id: int, branch: str) -> str:
        """Keep the task's branch name; the one kept first wins (a retry gets it back)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "insert into task_branches (task_id, branch) values (%s, %s) "
                "on conflict do nothing",
                (task_id, branch),
            )
            cursor = await conn.execute(
                "select branch from task_branches where task_id = %s", (task_id,)
            )
            row = await cursor.fetchone()
        return str(row["branch"]) if row else branch

    async def record_pull(self, task_id: int, pull_url: str) -> None:
        await self._count(
            "update task_branches set pull_url = %s where task_id = %s", (pull_url, task_id)
        )

    async def record_commit(self, task_id: int, start_sha: str, commit_sha: str) -> None:
        """Keep the commit the task is about to push, and its parent (its branch was fixed)."""
        await self._count(
            "update task_branches set start_sha = %s, commit_sha = %s where task_id = %s",
            (start_sha, commit_sha, task_id),
        )

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        await self._rows("select 1")

    async def close(self) -> None:
        await self.pool.close()
