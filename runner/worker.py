"""Workers: claim queued tasks from the store, run N at once, hold a lease while they run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.leases import split_taken_back
from runner.queue import TaskQueue
from runner.results import SHUTDOWN, Conclusion, EndedThenStopped, TaskResult, uncancel_current
from runner.store import TaskStore
from runner.task import Task, TaskState

if TYPE_CHECKING:
    from runner.cache import EnvironmentCache

log = logging.getLogger(__name__)

RunOne = Callable[[Task], Awaitable[TaskResult]]
# Waits between tries of recording a task's end through store hiccups (15.5 s in all, well
# within a lease: the heartbeat no longer renews it meanwhile).
FINISH_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0)
FINAL_STATES = {
    Conclusion.PUBLISHED: TaskState.SUCCEEDED,
    Conclusion.NO_CHANGES: TaskState.SUCCEEDED,
    Conclusion.ANSWERED: TaskState.SUCCEEDED,
    Conclusion.FAILED: TaskState.FAILED,
    Conclusion.CANCELLED: TaskState.CANCELLED,
}


@dataclass(frozen=True)
class LeaseTimes:
    """How long a running task's lease lasts, and how often a worker renews it and looks."""

    # A dead worker's task is taken back this long after its last renewal.
    lease: float = 60.0
    # Renew leases and notice cancels (another process set the state) this often.
    heartbeat: float = 2.0
    # Look for claimable tasks at least this often, wakeups or not.
    poll: float = 5.0

    @classmethod
    def for_lease(cls, lease: float) -> LeaseTimes:
        return cls(lease=lease, heartbeat=min(2.0, lease / 3), poll=min(5.0, lease / 2))


class Worker:
    """Claims tasks from the store and runs up to `max_concurrent` at once; a task's failure
    never stops it. Any number of workers, in any processes, may share one store."""

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        run_one: RunOne,
        max_concurrent: int,
        owner: str = "local",
        times: LeaseTimes = LeaseTimes(),
    ) -> None:
        self.store, self.queue, self.run_one = store, queue, run_one
        self.max_concurrent, self.owner, self.times = max_concurrent, owner, times
        self._running: dict[int, asyncio.Task[None]] = {}
        self._cancelled: dict[int, str | None] = {}  # task id: the first cancel's message
        self._all: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._draining = False

    async def serve(self) -> None:
        """Until drained or stopped: claim what the free slots allow, else wait for a wakeup.
        The leases of what still runs are renewed until it has ended, drain or not."""
        async with self._beating():
            while not self._draining:
                try:
                    if not await self._claim_some():
                        await self.queue.wait(self.times.poll)
                except Exception:  # a store or queue hiccup: the loop and its heartbeat go on
                    log.exception("could not claim tasks; trying again")
                    await asyncio.sleep(self.times.poll)
            await self.settle()

    async def drain(self) -> None:
        """Run until nothing is claimable and nothing runs here (tests, `gantry run`)."""
        async with self._beating():
            while True:
                await self._claim_some()
                if not self._all:
                    return
                await asyncio.wait(list(self._all), return_when=asyncio.FIRST_COMPLETED)

    async def settle(self) -> None:
        """Wait until every started task has ended (its cleanup included)."""
        while self._all:
            await asyncio.gather(*list(self._all), return_exceptions=True)

    async def finish_running(self, grace: float) -> None:
        """Claim nothing more; give running tasks `grace` seconds, then stop the rest."""
        self._draining = True
        await self.queue.put(0)  # wake `serve` so that it sees the drain
        if self._all and grace > 0:
            await asyncio.wait(list(self._all), timeout=grace)  # unlike wait_for, cancels none
        await self.stop()

    async def stop(self) -> None:
        """Cancel what runs and wait for its cleanup: containers go before the process does.
        The interrupted tasks are queued again, for whichever worker claims them next; those
        another process cancelled meanwhile (no heartbeat had told this one yet) stop as
        cancelled, and say so, not that they will run again."""
        self._stopping = self._draining = True
        if self._running:
            try:
                await asyncio.wait_for(self.beat(), self.times.heartbeat)
            except Exception:  # the store is away: the stop goes on, as a restart
                log.warning("could not look for cancels before stopping", exc_info=True)
        for task_id in list(self._running):
            self.cancel(task_id, SHUTDOWN)
        await self.settle()

    def cancel(self, task_id: int, message: str | None = None) -> bool:
        """Stop a running task now; False when it is not running here. Once only: a second
        cancel would interrupt the task's cleanup (its containers would stay)."""
        job = self._running.get(task_id)
        if job is None:
            return False
        if task_id not in self._cancelled:
            self._cancelled[task_id] = message
            job.cancel(message)
        return True

    async def _claim_some(self) -> int:
        """Claim and start tasks while slots are free; how many started."""
        started = 0
        while len(self._all) < self.max_concurrent and not self._draining:
            task = await self.store.claim_next(self.owner, self.times.lease)
            if task is None:
                break
            log.info("task %s claimed (%s#%s)", task.id, task.repo, task.number)
            job = asyncio.create_task(self._run(task), name=f"gantry-task-{task.id}")
            self._running[task.id] = job
            self._all.add(job)
            job.add_done_callback(self._all.discard)
            started += 1
        return started

    async def _run(self, task: Task) -> None:
        try:
            state = await self._guarded(task)
        finally:
            self._running.pop(task.id, None)
            self._cancelled.pop(task.id, None)
        await asyncio.shield(self._finish(task, state))

    async def _finish(self, task: Task, state: TaskState) -> None:
        """Record the end, through store hiccups (a few tries); if it still cannot be, the
        lease (no longer renewed) lapses and the task is taken back like a dead worker's."""
        for wait in (*FINISH_RETRIES, None):
            try:
                finished = await self.store.finish_task(task.id, self.owner, state)
                break
            except Exception:
                if wait is None:
                    log.exception("task %s: its end (%s) could not be recorded", task.id, state)
                    return
                log.warning("task %s: recording its end failed; again in %ss", task.id, wait)
                await asyncio.sleep(wait)
        if finished:
            log.info("task %s ended: %s", task.id, state)
        else:
            log.warning("task %s was taken back from this worker; its end is not recorded", task.id)
        await self.queue.put(task.id)  # its thread's next task may start now

    async def _guarded(self, task: Task) -> TaskState:
        try:
            result = await self.run_one(task)
        except EndedThenStopped as ended:
            # The task had ended when the stop came: its end is what gets recorded.
            log.info("task %s stopped once it had ended", task.id)
            uncancel_current()  # our own cancel: the worker goes on
            return FINAL_STATES[ended.result.conclusion]
        except asyncio.CancelledError:
            # Stopped by a shutdown, the task runs again at the next start; else it is over
            # (a user's cancel stays one when a shutdown comes during its cleanup).
            reason = self._cancelled.get(task.id, SHUTDOWN if self._stopping else None)
            interrupted = reason == SHUTDOWN
            log.info("task %s %s", task.id, "interrupted" if interrupted else "cancelled")
            uncancel_current()  # our own cancel: the worker goes on
            return TaskState.QUEUED if interrupted else TaskState.CANCELLED
        except Exception:
            log.exception("task %s failed outside the pipeline", task.id)
            return TaskState.FAILED
        return FINAL_STATES[result.conclusion]

    @contextlib.asynccontextmanager
    async def _beating(self) -> AsyncIterator[None]:
        """Renew the leases in the background while the worker runs."""
        beat = asyncio.create_task(self._beat_forever(), name="gantry-heartbeat")
        try:
            yield
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.times.heartbeat)
            try:
                await self.beat()
            except Exception:  # a store hiccup: the next beat tries again, well within the lease
                log.exception("could not renew the task leases")

    async def beat(self) -> None:
        """Renew this worker's leases; stop the tasks that are no longer its own to run (a
        cancel from another process, or a lease that lapsed and was taken back)."""
        ids = list(self._running)
        held = await self.store.heartbeat(self.owner, ids, self.times.lease)
        for task_id in set(ids) - held:
            if self.cancel(task_id):
                log.info("task %s stopped: cancelled or no longer leased here", task_id)


@dataclass
class Workers:
    """A running worker, its background loops, and the environment cache it uses."""

    worker: Worker
    tasks: list[asyncio.Task[None]]
    cache: EnvironmentCache | None = None

    def cancel(self, task_id: int) -> bool:
        return self.worker.cancel(task_id)


def not_cancelled(store: TaskStore) -> Callable[[Task], Awaitable[bool]]:
    """Whether a task is still to run, as `store` says now: not cancelled (by any process)."""

    async def wanted(task: Task) -> bool:
        stored = await store.get(task.id)
        return stored is None or stored.state is not TaskState.CANCELLED

    return wanted


async def recover_interrupted(
    store: TaskStore, queue: TaskQueue, owner: str | None = None
) -> tuple[list[Task], list[Task]]:
    """Take back the running tasks whose lease lapsed (a dead worker's), and `owner`'s own
    from before its restart: each is retried once, or given up (to be reported).

    Returns (retried, given up)."""
    retried, given_up = split_taken_back(await store.take_back_expired(owner))
    if retried:
        await queue.put(retried[0].id)
    return retried, given_up
