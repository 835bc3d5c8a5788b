"""The queue that hands task ids to workers; in-process by default, Redis to scale out."""

from __future__ import annotations

import asyncio
from typing import Protocol

from runner.store import TaskStore
from runner.task import TaskState


class TaskQueue(Protocol):
    """Hands task ids to workers, each at most once per `put`."""

    async def put(self, task_id: int) -> None: ...

    async def get(self) -> int: ...

    def qsize(self) -> int: ...


class MemoryQueue:
    """An asyncio queue: the embedded default, refilled from the store at start-up."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[int] = asyncio.Queue()

    async def put(self, task_id: int) -> None:
        await self._queue.put(task_id)

    async def get(self) -> int:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()


async def requeue_pending(store: TaskStore, queue: TaskQueue) -> int:
    """Queue again every task the store holds as queued; returns how many."""
    tasks = await store.with_state(TaskState.QUEUED)
    for task in tasks:
        await queue.put(task.id)
    return len(tasks)
