"""How much of unverified webhook bodies the server holds at once, and how long one may take.

A body must be read whole before its signature can be checked, so anyone who can reach the
webhook can make the server hold bytes: without a bound, N connections each trickling a
25 MB body hold N times 25 MB. Each body reserves its `Content-Length` before it is read, and a
body that finds no room is refused (503) without being read. Real deliveries are small
(nearly all are a few KB), so a separate allowance for small bodies stays open while large
ones fill the main pool: a flood of big unsigned bodies does not lock real deliveries out.
A body that is not in after `read_seconds` is cut off, so nobody holds room for long. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bot.webhook import MAX_BODY_BYTES, WebhookRejectedError

# Two bodies of the largest size GitHub sends may be read at once.
UNVERIFIED_BYTES = 2 * MAX_BODY_BYTES
# Bodies up to 1 MiB (what GitHub nearly always sends) may also use an allowance of their own.
SMALL_BODY_BYTES = 1024 * 1024
SMALL_ALLOWANCE_BYTES = 16 * 1024 * 1024
# GitHub gives up on a delivery that has no answer within 10 s, so a body still coming after
# that is not GitHub's: https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds
READ_SECONDS = 10.0


@dataclass
class Pool:
    """Bytes reserved out of `limit`, by bodies of at most `largest` bytes each."""

    limit: int
    largest: int
    held: int = 0

    def fits(self, size: int) -> bool:
        return size <= self.largest and self.held + size <= self.limit


def default_pools() -> list[Pool]:
    return [
        Pool(UNVERIFIED_BYTES, MAX_BODY_BYTES),
        Pool(SMALL_ALLOWANCE_BYTES, SMALL_BODY_BYTES),
    ]


@dataclass
class BodyBudget:
    """The room for bodies being read before verification; one per server process."""

    read_seconds: float = READ_SECONDS
    pools: list[Pool] = field(default_factory=default_pools)

    @property
    def held(self) -> int:
        """Bytes reserved right now, in all pools."""
        return sum(pool.held for pool in self.pools)

    @contextmanager
    def reserved(self, size: int) -> Iterator[None]:
        """Hold `size` bytes while a body is read; a 503 when no pool has room for it."""
        pool = next((pool for pool in self.pools if pool.fits(size)), None)
        if pool is None:
            raise WebhookRejectedError(
                503, "too many deliveries being read; try again", math.ceil(self.read_seconds)
            )
        pool.held += size
        try:
            yield
        finally:
            pool.held -= size
