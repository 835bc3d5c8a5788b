"""The durable inbox: deliveries stored before the answer, handled after, retried through
GitHub failures, and kept with their reason when they still fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import gidgethub
import orjson
from gidgethub import sansio

from bot.background import Background
from bot.github_client import UncertainWriteError
from bot.intake_load import IntakeLoad
from gantry.metrics import Metrics
from runner.store import InboxEntry, InboxState, TaskStore

log = logging.getLogger(__name__)

# Failures of GitHub or of the network: worth another try later.
UPSTREAM_ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, UncertainWriteError)
# A signed payload without the fields its event needs: no retry will help.
PAYLOAD_ERRORS = (KeyError, TypeError, ValueError, AttributeError)
MAX_RETRY_WAIT = 120.0
# Deliveries handled at once: enough to overlap GitHub's latency, few enough that a burst of
# background work never queues up in front of the webhook's answers.
WORKERS = 8
# The longest a delivery waits for the webhook to go quiet before it is handled regardless.
PATIENCE = 1.0

Handler = Callable[[sansio.Event], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Job:
    """A delivery to try and how often it was tried.

    Only the payload's text waits in the queue, never its parsed form: a burst of parsed
    payloads held in memory makes every garbage collection slower, which costs the webhook
    more than parsing each payload again (about 15 µs) when its turn comes."""

    entry: InboxEntry
    attempts: int


def retry_delays(first: float, limit: float, cap: float = MAX_RETRY_WAIT) -> list[float]:
    """The waits before each retry: doubling from `first` (at most `cap`), summing to <= `limit`."""
    delays: list[float] = []
    wait = first
    while sum(delays) + wait <= limit:
        delays.append(wait)
        wait = min(wait * 2, cap)
    return delays


def summary(outcomes: Sequence[str]) -> str:
    """What a handled delivery led to, as one word (or a comma-separated few)."""
    return ",".join(outcomes) if outcomes else "ignored"


def event_of(entry: InboxEntry) -> sansio.Event:
    """A stored delivery as the event the routers take."""
    data = orjson.loads(entry.payload)
    return sansio.Event(data, event=entry.event, delivery_id=entry.delivery_id)


@dataclass
class Inbox:
    """Handles stored deliveries in the background, `workers` at a time, each one after the
    webhook has gone quiet (or `patience` seconds at the latest); `drain()` waits for all
    (tests, shutdown)."""

    store: TaskStore
    handle: Handler
    delays: list[float]
    load: IntakeLoad = field(default_factory=IntakeLoad)
    workers: int = WORKERS
    patience: float = PATIENCE
    background: Background = field(default_factory=Background)
    metrics: Metrics = field(default_factory=Metrics)
    _queue: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    _runners: list[asyncio.Task[None]] = field(default_factory=list)
    _open: int = 0  # queued or being tried

    def submit(self, entry: InboxEntry) -> None:
        """Queue a stored delivery."""
        if not self._runners:
            loop = asyncio.get_running_loop()
            self._runners = [loop.create_task(self._run()) for _ in range(self.workers)]
        self._put(Job(entry, entry.attempts))

    async def resume(self) -> int:
        """Handle every delivery still pending (a restart, a crash); how many there were."""
        pending = await self.store.inbox(InboxState.PENDING)
        for entry in pending:
            self.submit(entry)
        return len(pending)

    async def _run(self) -> None:
        """One worker: the next delivery, once the webhook is quiet; never dies of one."""
        while True:
            job = await self._queue.get()
            try:
                await self.load.quiet(self.patience)
                await self.step(job)
            except Exception:
                log.exception("delivery %s: handling failed", job.entry.delivery_id)
            finally:
                self._open -= 1
                self._queue.task_done()

    async def step(self, job: Job) -> None:
        """One try of a delivery; a retry is queued again after its wait, off the workers."""
        attempts = job.attempts + 1
        reason = await self.attempt(job.entry, attempts)
        if reason is None:
            return
        if attempts > len(self.delays):
            await self.give_up(job.entry, attempts, reason)
            return
        await self.store.settle_delivery(
            job.entry.delivery_id, InboxState.PENDING, attempts=attempts, outcome="", reason=reason
        )
        self.metrics.delivery_retried()
        retry = Job(job.entry, attempts)
        self.background.spawn(self._later(retry, self.delays[attempts - 1]), "delivery retry")

    async def _later(self, job: Job, wait: float) -> None:
        await asyncio.sleep(wait)
        self._put(job)

    def _put(self, job: Job) -> None:
        self._open += 1
        self._queue.put_nowait(job)

    async def attempt(self, entry: InboxEntry, attempts: int) -> str | None:
        """One try; None when it is settled, else why it should be tried again."""
        try:
            outcomes = await self.handle(event_of(entry))
        except UPSTREAM_ERRORS as exc:
            log.warning("delivery %s: GitHub failed (try %d): %s", entry.delivery_id, attempts, exc)
            return f"GitHub failed: {type(exc).__name__}: {exc}"
        except PAYLOAD_ERRORS as exc:
            await self.give_up(entry, attempts, f"payload lacks what its event needs: {exc!r}")
            return None
        outcome = summary(outcomes)
        self.metrics.delivery_handled(outcomes)
        await self.store.settle_delivery(
            entry.delivery_id, InboxState.DONE, attempts=attempts, outcome=outcome, reason=""
        )
        log.info("delivery %s (%s): %s", entry.delivery_id, entry.event, outcome)
        return None

    async def give_up(self, entry: InboxEntry, attempts: int, reason: str) -> None:
        """Keep the delivery as failed, with its reason, for the operator."""
        self.metrics.delivery_failed()
        await self.store.settle_delivery(
            entry.delivery_id, InboxState.FAILED, attempts=attempts, outcome="failed", reason=reason
        )
        log.error(
            "delivery %s (%s) failed after %d tries, kept for the operator: %s",
            entry.delivery_id, entry.event, attempts, reason,
        )  # fmt: skip

    async def drain(self) -> None:
        """Wait until every submitted delivery is settled (retries included)."""
        while True:
            await self._queue.join()
            await self.background.drain()
            if not self._open:
                return

    async def close(self) -> None:
        """Stop the workers; what they had not handled stays pending in the store."""
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners = []
