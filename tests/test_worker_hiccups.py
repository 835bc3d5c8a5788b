"""A worker through the moments that once made a task lie: a drain longer than a lease, one
store error when claiming or when recording an end, a user's cancel followed by a shutdown,
and a store error under the periodic container sweep. Each is judged by what the store says
in the end (and how often the task ran), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from config.database import Database
from runner.cleanup import sweep_forever
from runner.queue import MemoryQueue
from runner.results import Conclusion, TaskResult
from runner.store import SQLiteTaskStore, TaskStore
from runner.stores import open_store, task_wakeups
from runner.task import Task, TaskState
from runner.worker import LeaseTimes, Worker, recover_interrupted
from tests.store_fixtures import database
from tests.test_task_store import TASK

__all__ = ["database"]

FAST = LeaseTimes(lease=2.0, heartbeat=0.1, poll=0.1)
FINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}


class FailsOnce:
    """The store, with one method failing once (`database is locked`, a dropped connection)."""

    def __init__(self, inner: TaskStore, method: str) -> None:
        self.inner, self.method, self.failed = inner, method, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method or self.failed:
            return attr

        async def once(*_args: Any, **_kwargs: Any) -> Any:
            self.failed = True
            raise sqlite3.OperationalError("database is locked")

        return once


async def quick(_task: Task) -> TaskResult:
    await asyncio.sleep(0.05)
    return TaskResult(Conclusion.PUBLISHED)


async def final_state(store: TaskStore, task_id: int, seconds: float = 30) -> TaskState:
    """The task's state once it is final (a wide bound; the store has no event to await)."""
    async with asyncio.timeout(seconds):
        while (task := await store.get(task_id)) is None or task.state not in FINAL:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return task.state


async def test_a_draining_worker_keeps_its_tasks_leases_until_they_end(database: Database) -> None:
    store = await open_store(database)
    async with task_wakeups(database) as queue:
        task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
        starts: list[str] = []
        started = asyncio.Event()

        def runner(name: str) -> Callable[[Task], Awaitable[TaskResult]]:
            async def run(_task: Task) -> TaskResult:
                starts.append(name)
                started.set()
                await asyncio.sleep(2 * FAST.lease)  # within the drain's grace, past a lease
                return TaskResult(Conclusion.PUBLISHED)

            return run

        a = Worker(store, queue, runner("a"), 1, owner="a", times=FAST)
        serving = asyncio.create_task(a.serve())
        await asyncio.wait_for(started.wait(), 10)
        draining = asyncio.create_task(a.finish_running(30))  # SIGTERM: a drain
        await asyncio.sleep(1.5 * FAST.lease)
        retried, _ = await recover_interrupted(store, queue)  # any worker's take-back
        b = Worker(store, queue, runner("b"), 1, owner="b", times=FAST)
        await asyncio.wait_for(b.drain(), 10)
        await draining
        await serving
        ended = await store.get(task.id)
        await store.close()
    assert (retried, starts) == ([], ["a"])
    assert ended is not None
    assert ended.state is TaskState.SUCCEEDED


async def test_an_end_the_store_fails_to_record_once_is_recorded_after(database: Database) -> None:
    store = await open_store(database)
    async with task_wakeups(database) as queue:
        task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
        worker = Worker(FailsOnce(store, "finish_task"), queue, quick, 1, owner="w", times=FAST)
        serving = asyncio.create_task(worker.serve())
        state = await final_state(store, task.id)
        await worker.finish_running(0)
        await serving
        await store.close()
    assert state is TaskState.SUCCEEDED


async def test_a_claim_the_store_fails_once_does_not_end_the_worker(database: Database) -> None:
    store = await open_store(database)
    async with task_wakeups(database) as queue:
        worker = Worker(FailsOnce(store, "claim_next"), queue, quick, 1, owner="w", times=FAST)
        serving = asyncio.create_task(worker.serve())
        await asyncio.sleep(0)  # the first claim fails
        task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
        await queue.put(task.id)
        state = await final_state(store, task.id)
        await worker.finish_running(0)
        await serving
        await store.close()
    assert state is TaskState.SUCCEEDED


async def test_a_cancelled_task_stays_cancelled_when_a_shutdown_comes_during_its_cleanup(
    tmp_path: Path,
) -> None:
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    started, cleaning = asyncio.Event(), asyncio.Event()

    async def run(_task: Task) -> TaskResult:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:  # the cancelled task's cleanup: containers removed, final report posted
            cleaning.set()
            await asyncio.shield(asyncio.sleep(0.3))
        return TaskResult(Conclusion.PUBLISHED)

    task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
    worker = Worker(store, MemoryQueue(), run, 1, owner="w")
    serving = asyncio.create_task(worker.serve())
    await asyncio.wait_for(started.wait(), 10)
    await store.set_state(task.id, TaskState.CANCELLED)  # what `@gantry cancel` does
    worker.cancel(task.id)
    await cleaning.wait()
    await worker.finish_running(0)  # SIGTERM meanwhile
    await serving
    ended = await store.get(task.id)
    await store.close()
    assert ended is not None
    assert ended.state is TaskState.CANCELLED


async def test_a_cancel_from_another_process_stays_cancelled_when_a_shutdown_comes_first(
    database: Database,
) -> None:
    store, canceller = await open_store(database), await open_store(database)
    started = asyncio.Event()

    async def run(_task: Task) -> TaskResult:
        started.set()
        await asyncio.sleep(30)
        return TaskResult(Conclusion.PUBLISHED)

    task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
    # The heartbeat that would see the cancel is not due before the shutdown comes.
    times = LeaseTimes(lease=60.0, heartbeat=30.0, poll=0.1)
    worker = Worker(store, MemoryQueue(), run, 1, owner="w", times=times)
    serving = asyncio.create_task(worker.serve())
    await asyncio.wait_for(started.wait(), 10)
    # `@gantry cancel`, taken by `gantry serve --no-workers`: a store write, nothing more.
    assert await canceller.cancel_task(task.id) is not None
    await worker.finish_running(0)  # SIGTERM: the running task is interrupted
    await serving
    ended = await store.get(task.id)
    rerun = await store.claim_next("next-start", 60)
    await store.close()
    await canceller.close()
    assert ended is not None
    assert ended.state is TaskState.CANCELLED
    assert rerun is None


async def test_the_container_sweep_survives_a_store_error() -> None:
    asked = 0
    second = asyncio.Event()

    async def live() -> list[str]:
        nonlocal asked
        asked += 1
        if asked > 1:
            second.set()
        raise sqlite3.OperationalError("database is locked")

    loop = asyncio.create_task(sweep_forever(None, live, None, interval_s=0.01))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(second.wait(), 10)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert asked > 1
