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
# Payload text the queue keeps in memory; a flood beyond it waits in the store alone, so the
# server stays small however long the flood lasts.
HELD_BYTES = 8 * 1024 * 1024

Handler = Callable[[sansio.Event], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Job:
    """A delivery to try, how often it was tried, and when it is handled at the latest.

    `due` is its arrival (or its retry's) plus the inbox's patience: a delivery that already
    waited that long is handled at once, however busy the webhook is. The queue holds the
    stored entry (its payload's text, never its parsed form: parsed payloads make every
    garbage collection slower) only within `HELD_BYTES`; beyond, only the id, and the store
    gives the payload back when its turn comes."""

    delivery_id: str
    attempts: int
    due: float
    entry: InboxEntry | None = None


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
    held_bytes: int = HELD_BYTES
    background: Background = field(default_factory=Background)
    metrics: Metrics = field(default_factory=Metrics)
    _queue: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    _runners: list[asyncio.Task[None]] = field(default_factory=list)
    _open: int = 0  # queued or being tried
    _held: int = 0  # payload text the queue holds

    def submit(self, entry: InboxEntry) -> None:
        """Queue a stored delivery."""
        self._start()
        self._put(entry.delivery_id, entry.attempts, entry)

    async def resume(self) -> int:
        """Handle every delivery still pending (a restart, a crash); how many there were.
        Only their ids are read now: however many wait, the payloads come one at a time."""
        pending = await self.store.pending_deliveries()
        self._start()
        for delivery_id, attempts in pending:
            self._put(delivery_id, attempts)
        return len(pending)

    def _start(self) -> None:
        if not self._runners:
            loop = asyncio.get_running_loop()
            self._runners = [loop.create_task(self._run()) for _ in range(self.workers)]

    async def _run(self) -> None:
        """One worker: the next delivery, once the webhook is quiet or the delivery is due;
        never dies of one."""
        while True:
            job = await self._queue.get()
            self._held -= len(job.entry.payload) if job.entry is not None else 0
            try:
                await self.load.quiet(max(0.0, job.due - self.load.clock()))
                entry = job.entry or await self._pending(job.delivery_id)
                if entry is not None:
                    await self.step(job, entry)
            except Exception:
                log.exception("delivery %s: handling failed", job.delivery_id)
                self._after_error(job)
            finally:
                self._open -= 1
                self._queue.task_done()

    async def _pending(self, delivery_id: str) -> InboxEntry | None:
        """The stored delivery, if it still waits to be handled."""
        entry = await self.store.inbox_entry(delivery_id)
        return entry if entry is not None and entry.state is InboxState.PENDING else None

    async def step(self, job: Job, entry: InboxEntry) -> None:
        """One try of a delivery; a retry is queued again after its wait, off the workers."""
        attempts = job.attempts + 1
        reason = await self.attempt(entry, attempts)
        if reason is None:
            return
        if attempts > len(self.delays):
            await self.give_up(entry, attempts, reason)
            return
        await self.store.settle_delivery(
            entry.delivery_id, InboxState.PENDING, attempts=attempts, outcome="", reason=reason
        )
        self.metrics.delivery_retried()
        self._retry(job.delivery_id, attempts)

    def _after_error(self, job: Job) -> None:
        """A try that failed outside the handler (the store itself): tried again like a
        GitHub failure; past the last retry it stays pending in the store for the next start."""
        attempts = job.attempts + 1
        if attempts > len(self.delays):
            log.error("delivery %s: left pending for the next start", job.delivery_id)
            return
        self._retry(job.delivery_id, attempts)

    def _retry(self, delivery_id: str, attempts: int) -> None:
        """Queue the delivery again after its wait (only its id waits: an outage's retries
        hold no payloads)."""
        wait = self.delays[attempts - 1]
        self.background.spawn(self._later(delivery_id, attempts, wait), "delivery retry")

    async def _later(self, delivery_id: str, attempts: int, wait: float) -> None:
        await asyncio.sleep(wait)
        self._put(delivery_id, attempts)

    def _put(self, delivery_id: str, attempts: int, entry: InboxEntry | None = None) -> None:
        """Queue a try, due `patience` from now; the entry is kept if the budget allows."""
        size = len(entry.payload) if entry is not None else 0
        held = entry if entry is not None and self._held + size <= self.held_bytes else None
        self._held += size if held is not None else 0
        self._open += 1
        due = self.load.clock() + self.patience
        self._queue.put_nowait(Job(delivery_id, attempts, due, held))

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
        except Exception as exc:  # the store, or a defect: tried again, then kept with it
            log.exception("delivery %s: handling failed (try %d)", entry.delivery_id, attempts)
            return f"handling failed: {type(exc).__name__}: {exc}"
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
