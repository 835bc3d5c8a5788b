"""Several workers on one store, as on several hosts (each its own store connection and
wakeups), on SQLite and PostgreSQL: each task runs once, one per thread at a time in order,
cancels reach the worker that runs the task, and a dead worker's task is taken back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from config.database import Database
from runner.queue import TaskQueue
from runner.results import Conclusion, TaskResult
from runner.store import TaskStore
from runner.stores import open_store, task_wakeups
from runner.task import Task, TaskState
from runner.worker import LeaseTimes, RunOne, Worker, recover_interrupted
from tests.store_fixtures import database
from tests.test_task_store import TASK

__all__ = ["database"]  # a fixture, used by name
FAST = LeaseTimes(lease=2.0, heartbeat=0.05, poll=0.1)


class Fleet:
    """What every worker's tasks did, seen from one place."""

    def __init__(self, hold: float = 0.05) -> None:
        self.hold = hold
        self.running: dict[int, str] = {}  # task id -> thread
        self.ran: list[tuple[str, int]] = []  # (worker, task id), in start order
        self.overlaps: list[str] = []
        self.started = asyncio.Event()

    def runner(self, name: str, busiest: list[int]) -> RunOne:
        async def run(task: Task) -> TaskResult:
            thread = f"{task.repo}#{task.number}"
            if thread in self.running.values():
                self.overlaps.append(thread)
            self.running[task.id] = thread
            self.ran.append((name, task.id))
            self.started.set()
            busiest.append(sum(1 for w, i in self.ran if w == name and i in self.running))
            try:
                await asyncio.sleep(self.hold)
            finally:
                del self.running[task.id]
            return TaskResult(Conclusion.PUBLISHED)

        return run


@contextlib.asynccontextmanager
async def process(database: Database) -> AsyncIterator[tuple[TaskStore, TaskQueue]]:
    """A store connection and wakeups of their own, as another process has."""
    store = await open_store(database)
    try:
        async with task_wakeups(database) as queue:
            yield store, queue
    finally:
        await store.close()


async def add_tasks(store: TaskStore, threads: int, per_thread: int) -> list[Task]:
    tasks = []
    for round_ in range(per_thread):
        for number in range(1, threads + 1):
            task = dataclasses.replace(TASK, repo=f"octo/r{number % 3}", number=number)
            tasks.append(await store.add_task(task, f"d{number}-{round_}"))
    return tasks


async def test_three_workers_run_each_task_once_one_per_thread_in_order(
    database: Database,
) -> None:
    fleet = Fleet()
    async with (
        process(database) as (a, qa),
        process(database) as (b, qb),
        process(database) as (c, qc),
    ):
        tasks = await add_tasks(a, threads=5, per_thread=3)
        busiest: dict[str, list[int]] = {"a": [], "b": [], "c": []}
        workers = [
            Worker(s, q, fleet.runner(n, busiest[n]), 2, owner=n, times=FAST)
            for n, s, q in (("a", a, qa), ("b", b, qb), ("c", c, qc))
        ]
        await asyncio.wait_for(asyncio.gather(*(w.drain() for w in workers)), 60)
        ids = [task_id for _, task_id in fleet.ran]
        assert sorted(ids) == sorted(t.id for t in tasks)  # each exactly once
        assert fleet.overlaps == []
        for number in range(1, 6):
            thread = [t.id for t in tasks if t.number == number]
            assert [i for i in ids if i in thread] == thread  # in the order asked
        assert max(max(counts, default=0) for counts in busiest.values()) <= 2
        assert len({worker for worker, _ in fleet.ran}) > 1  # the work was shared
        done = await c.with_state(TaskState.SUCCEEDED)
        assert sorted(t.id for t in done) == sorted(t.id for t in tasks)


async def test_a_cancel_from_another_process_stops_the_task_where_it_runs(
    database: Database,
) -> None:
    fleet = Fleet(hold=30)
    async with process(database) as (intake, _), process(database) as (store, queue):
        [task] = await add_tasks(intake, threads=1, per_thread=1)
        worker = Worker(store, queue, fleet.runner("w", []), 1, owner="w", times=FAST)
        draining = asyncio.create_task(worker.drain())
        await asyncio.wait_for(fleet.started.wait(), 10)
        await intake.set_state(task.id, TaskState.CANCELLED)  # what `@gantry cancel` does
        await asyncio.wait_for(draining, 10)
        ended = await intake.get(task.id)
        assert ended is not None
        assert ended.state is TaskState.CANCELLED
        assert fleet.running == {}


async def test_a_dead_workers_task_is_taken_back_after_its_lease_and_keeps_its_thread_order(
    database: Database,
) -> None:
    fleet = Fleet()
    async with process(database) as (store, queue):
        first, second = await add_tasks(store, threads=1, per_thread=2)
        dead = await store.claim_next("killed-9", 0.5)  # claimed, then the worker died
        assert dead is not None
        assert dead.id == first.id
        worker = Worker(store, queue, fleet.runner("w", []), 2, owner="w", times=FAST)
        await worker.drain()
        assert fleet.ran == []  # the second waits behind the first; the first is leased
        assert await recover_interrupted(store, queue) == ([], [])
        await asyncio.sleep(0.6)
        retried, given_up = await recover_interrupted(store, queue)
        assert ([t.id for t in retried], given_up) == ([first.id], [])
        await worker.drain()
        assert fleet.ran == [("w", first.id), ("w", second.id)]
        again = await store.get(first.id)
        assert again is not None
        assert again.state is TaskState.SUCCEEDED
        # The dead worker's late word changes nothing: the task is no longer its own.
        assert not await store.finish_task(first.id, "killed-9", TaskState.FAILED)


async def serve_then_drain(
    store: TaskStore, queue: TaskQueue, fleet: Fleet, grace: float
) -> Task | None:
    """A worker serves one new task; once it started, the worker drains with `grace`."""
    [task] = await add_tasks(store, threads=1, per_thread=1)
    worker = Worker(store, queue, fleet.runner("w", []), 1, owner="w", times=FAST)
    serving = asyncio.create_task(worker.serve())
    await asyncio.wait_for(fleet.started.wait(), 10)
    await asyncio.wait_for(worker.finish_running(grace), grace + 10)
    await asyncio.wait_for(serving, 5)
    return await store.get(task.id)


async def test_a_drain_lets_short_tasks_end_and_queues_the_rest_for_another_worker(
    database: Database,
) -> None:
    async with process(database) as (store, queue):
        done = await serve_then_drain(store, queue, Fleet(hold=0.1), grace=10)
        assert done is not None
        assert done.state is TaskState.SUCCEEDED
        stopped = await serve_then_drain(store, queue, Fleet(hold=30), grace=0.2)
        assert stopped is not None
        assert stopped.state is TaskState.QUEUED
        requeued = await store.claim_next("other", 60)
        assert requeued is not None
        assert requeued.id == stopped.id  # at once: no lease to wait out
