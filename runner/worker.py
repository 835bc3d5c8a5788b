"""Workers: take queued tasks, run N at once and one at a time per PR or issue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from runner.queue import TaskQueue
from runner.results import SHUTDOWN, Conclusion, TaskResult
from runner.store import Task, TaskState, TaskStore

log = logging.getLogger(__name__)

RunOne = Callable[[Task], Awaitable[TaskResult]]
FINAL_STATES = {
    Conclusion.PUBLISHED: TaskState.SUCCEEDED,
    Conclusion.NO_CHANGES: TaskState.SUCCEEDED,
    Conclusion.ANSWERED: TaskState.SUCCEEDED,
    Conclusion.FAILED: TaskState.FAILED,
    Conclusion.CANCELLED: TaskState.CANCELLED,
}


def thread_key(task: Task) -> str:
    """Tasks on the same issue or PR share a key and never overlap."""
    return f"{task.repo.lower()}#{task.number}"


class Worker:
    """Runs tasks from the queue; a task's failure never stops the worker."""

    def __init__(
        self, store: TaskStore, queue: TaskQueue, run_one: RunOne, max_concurrent: int
    ) -> None:
        self.store, self.queue, self.run_one = store, queue, run_one
        self._slots = asyncio.Semaphore(max_concurrent)
        self._threads: dict[str, asyncio.Lock] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._all: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def serve(self) -> None:
        """Forever: take a task id, start it (it waits for its slot and its thread)."""
        while True:
            task_id = await self.queue.get()
            job = asyncio.create_task(self._run(task_id), name=f"gantry-task-{task_id}")
            self._all.add(job)
            job.add_done_callback(self._all.discard)

    async def drain(self) -> None:
        """Run until the queue is empty and nothing is running (tests, `gantry run`)."""
        while self.queue.qsize() or self._all:
            if self.queue.qsize():
                task_id = await self.queue.get()
                job = asyncio.create_task(self._run(task_id))
                self._all.add(job)
                job.add_done_callback(self._all.discard)
            else:
                await asyncio.gather(*list(self._all), return_exceptions=True)

    async def settle(self) -> None:
        """Wait until every started task has ended (its cleanup included)."""
        while self._all:
            await asyncio.gather(*list(self._all), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel what runs and wait for its cleanup: containers go before the process does."""
        self._stopping = True
        for job in list(self._running.values()):
            job.cancel(SHUTDOWN)
        await self.settle()

    def cancel(self, task_id: int) -> bool:
        """Stop a running task now; False when it is not running here."""
        job = self._running.get(task_id)
        if job is None:
            return False
        job.cancel()
        return True

    async def _run(self, task_id: int) -> None:
        task = await self.store.get(task_id)
        if task is None:
            return
        lock = self._threads.setdefault(thread_key(task), asyncio.Lock())
        async with self._slots, lock:
            task = await self.store.get(task_id)
            if task is None or task.state is not TaskState.QUEUED:
                return  # cancelled while it waited
            await self.store.set_state(task_id, TaskState.RUNNING)
            current = asyncio.current_task()
            if current is not None:
                self._running[task_id] = current
            try:
                state = await self._guarded(task)
            finally:
                self._running.pop(task_id, None)
            await asyncio.shield(self.store.set_state(task_id, state))

    async def _guarded(self, task: Task) -> TaskState:
        try:
            result = await self.run_one(task)
        except asyncio.CancelledError:
            log.info("task %s %s", task.id, "interrupted" if self._stopping else "cancelled")
            # Swallow our own cancel: the worker goes on; the task is over.
            with contextlib.suppress(Exception):
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            # Stopped by a shutdown, the task runs again at the next start; else it is over.
            return TaskState.QUEUED if self._stopping else TaskState.CANCELLED
        except Exception:
            log.exception("task %s failed outside the pipeline", task.id)
            return TaskState.FAILED
        return FINAL_STATES[result.conclusion]


async def recover_interrupted(store: TaskStore, queue: TaskQueue) -> tuple[list[Task], list[Task]]:
    """After a crash: tasks left running are retried once, or given up (to be reported).

    Returns (retried, given up)."""
    retried, given_up = [], []
    for task in await store.with_state(TaskState.RUNNING):
        if await store.bump_attempts(task.id) <= 1:
            await store.set_state(task.id, TaskState.QUEUED)
            await queue.put(task.id)
            retried.append(task)
        else:
            await store.set_state(task.id, TaskState.FAILED)
            given_up.append(task)
    return retried, given_up
