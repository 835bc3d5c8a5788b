"""`@gantry reset-cache` on every host: the server records the request in the store, and each
worker drops that repository's cached environments on its own engine."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)
# How often a worker looks for new reset requests.
RESET_POLL_S = 10.0


class ResetRequests(Protocol):
    async def cache_resets_after(self, after: int) -> list[tuple[int, str]]: ...

    async def newest_cache_reset(self) -> int: ...


class DropsRepos(Protocol):
    async def drop_repo(self, repo: str) -> int: ...


async def apply_resets(store: ResetRequests, cache: DropsRepos, seen: int) -> int:
    """Carry out the requests after id `seen`; the newest id carried out."""
    for request_id, repo in await store.cache_resets_after(seen):
        dropped = await cache.drop_repo(repo)
        log.info("reset-cache of %s: dropped %d cached environment(s)", repo, dropped)
        seen = request_id
    return seen


async def follow_resets(
    store: ResetRequests, cache: DropsRepos, every: float = RESET_POLL_S
) -> None:
    """From now on, carry out every reset request within `every` seconds. (A worker that was
    down meanwhile keeps its images until they expire, at most the cache's TTL.)"""
    seen = await store.newest_cache_reset()
    while True:
        await asyncio.sleep(every)
        try:
            seen = await apply_resets(store, cache, seen)
        except Exception:  # the store or the engine is away: the next look tries again
            log.exception("could not carry out cache reset requests")
