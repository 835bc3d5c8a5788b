"""The durable inbox: deliveries stored before the answer, handled after, retried through
GitHub failures, and kept with their reason when they still fail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import gidgethub
from gidgethub import sansio

from bot.background import Background
from bot.github_client import UncertainWriteError
from gantry.metrics import Metrics
from runner.store import InboxEntry, InboxState, TaskStore

log = logging.getLogger(__name__)

# Failures of GitHub or of the network: worth another try later.
UPSTREAM_ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, UncertainWriteError)
# A signed payload without the fields its event needs: no retry will help.
PAYLOAD_ERRORS = (KeyError, TypeError, ValueError, AttributeError)
MAX_RETRY_WAIT = 120.0

Handler = Callable[[sansio.Event], Awaitable[Sequence[str]]]


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
    return sansio.Event(json.loads(entry.payload), event=entry.event, delivery_id=entry.delivery_id)


@dataclass
class Inbox:
    """Handles stored deliveries in the background; `drain()` waits for all (tests, shutdown)."""

    store: TaskStore
    handle: Handler
    delays: list[float]
    background: Background = field(default_factory=Background)
    metrics: Metrics = field(default_factory=Metrics)

    def submit(self, entry: InboxEntry) -> None:
        """Handle a stored delivery beside the request that brought it."""
        self.background.spawn(self.process(entry), f"delivery {entry.delivery_id}")

    async def resume(self) -> int:
        """Handle every delivery still pending (a restart, a crash); how many there were."""
        pending = await self.store.inbox(InboxState.PENDING)
        for entry in pending:
            self.submit(entry)
        return len(pending)

    async def process(self, entry: InboxEntry) -> None:
        """Handle one delivery to the end: done, or failed after its retries."""
        attempts = entry.attempts
        while True:
            attempts += 1
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
            await asyncio.sleep(self.delays[attempts - 1])

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
        """Wait until every submitted delivery is settled."""
        await self.background.drain()
