"""The worker: N at once, one per thread, cancel, and recovery after a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from runner.pipeline import round_of, task_file
from runner.queue import MemoryQueue
from runner.results import Conclusion, TaskResult
from runner.store import SQLiteTaskStore, Task, TaskState
from runner.worker import Worker, recover_interrupted
from tests.test_task_store import TASK


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteTaskStore]:
    opened = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    yield opened
    await opened.close()


class Recorder:
    """A run function that notes overlap and can be held or made to fail."""

    def __init__(self, hold: float = 0.05, fail_on: int | None = None) -> None:
        self.hold, self.fail_on = hold, fail_on
        self.running: set[int] = set()
        self.started = asyncio.Event()
        self.overlap: list[set[int]] = []
        self.ran: list[int] = []

    async def __call__(self, task: Task) -> TaskResult:
        self.running.add(task.id)
        self.started.set()
        self.overlap.append(set(self.running))
        try:
            await asyncio.sleep(self.hold)
            if task.id == self.fail_on:
                raise RuntimeError("boom")
            self.ran.append(task.id)
            return TaskResult(Conclusion.PUBLISHED)
        finally:
            self.running.discard(task.id)


async def add(store: SQLiteTaskStore, queue: MemoryQueue, number: int, n: int = 1) -> list[int]:
    ids = []
    for i in range(n):
        task = await store.add_task(dataclasses.replace(TASK, number=number), f"d{number}-{i}")
        await queue.put(task.id)
        ids.append(task.id)
    return ids


async def test_at_most_n_at_once_and_one_per_thread(store: SQLiteTaskStore) -> None:
    queue, run = MemoryQueue(), Recorder()
    same = await add(store, queue, 1, 3)
    others = [i for n in (2, 3, 4) for i in await add(store, queue, n)]
    await Worker(store, queue, run, max_concurrent=2).drain()
    assert sorted(run.ran) == sorted(same + others)
    assert max(len(group) for group in run.overlap) <= 2
    assert all(len(group & set(same)) <= 1 for group in run.overlap)
    assert [i for i in run.ran if i in same] == same  # in order
    assert {t.id for t in await store.with_state(TaskState.SUCCEEDED)} == set(same + others)


async def test_a_failing_task_does_not_stop_the_worker(store: SQLiteTaskStore) -> None:
    queue = MemoryQueue()
    first, second = await add(store, queue, 1), await add(store, queue, 2)
    run = Recorder(fail_on=first[0])
    await Worker(store, queue, run, max_concurrent=1).drain()
    assert run.ran == second
    failed = await store.get(first[0])
    assert failed is not None
    assert failed.state is TaskState.FAILED


async def test_cancel_stops_a_running_task_and_skips_a_queued_one(store: SQLiteTaskStore) -> None:
    queue, run = MemoryQueue(), Recorder(hold=30)
    running, waiting = await add(store, queue, 1, 2)
    worker = Worker(store, queue, run, max_concurrent=1)
    draining = asyncio.create_task(worker.drain())
    await asyncio.wait_for(run.started.wait(), 5)
    await store.set_state(waiting, TaskState.CANCELLED)
    assert worker.cancel(running)
    await asyncio.wait_for(draining, 5)
    states = [(await store.get(i)).state for i in (running, waiting)]  # type: ignore[union-attr]
    assert states == [TaskState.CANCELLED, TaskState.CANCELLED]
    assert run.ran == []
    assert not worker.cancel(running)


async def test_interrupted_tasks_are_retried_once_then_given_up(store: SQLiteTaskStore) -> None:
    queue = MemoryQueue()
    [task_id] = await add(store, queue, 1)
    await queue.get()
    await store.set_state(task_id, TaskState.RUNNING)
    retried, given_up = await recover_interrupted(store, queue)
    assert ([t.id for t in retried], given_up) == ([task_id], [])
    assert await queue.get() == task_id
    await store.set_state(task_id, TaskState.RUNNING)
    retried, given_up = await recover_interrupted(store, queue)
    assert (retried, [t.id for t in given_up]) == ([], [task_id])
    final = await store.get(task_id)
    assert final is not None
    assert final.state is TaskState.FAILED


async def test_a_shutdown_leaves_the_running_task_queued_for_the_next_start(
    store: SQLiteTaskStore,
) -> None:
    queue, run = MemoryQueue(), Recorder(hold=30)
    [task_id] = await add(store, queue, 1)
    worker = Worker(store, queue, run, max_concurrent=1)
    serving = asyncio.create_task(worker.serve())
    await asyncio.wait_for(run.started.wait(), 5)
    await asyncio.wait_for(worker.stop(), 5)
    serving.cancel()
    stopped = await store.get(task_id)
    assert stopped is not None
    assert stopped.state is TaskState.QUEUED


def test_the_task_file_carries_the_thread_and_earlier_rounds() -> None:
    task = Task(**(dataclasses.asdict(TASK) | {
        "id": 2, "delivery_id": "d", "state": TaskState.RUNNING, "created_at": 0.0,
        "updated_at": 0.0,
    }))  # fmt: skip
    earlier = dataclasses.replace(task, id=1, request="first try", state=TaskState.SUCCEEDED)
    data = task_file(task, "a" * 40, [round_of(earlier)])
    assert data["body"] == "It fails at midnight."
    assert data["base_sha"] == "a" * 40
    assert data["mode"] == "code"
    assert data["rounds"] == [
        {"id": 1, "request": "first try", "requester": "alice", "state": "succeeded"}
    ]
    assert "token" not in json.dumps(data).lower()
