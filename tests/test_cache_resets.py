"""`@gantry reset-cache` across hosts: a request stored by the server is carried out by every
worker on its own cache, once, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field

from config.database import Database
from runner.cache_resets import apply_resets
from runner.stores import open_store
from tests.store_fixtures import database

__all__ = ["database"]  # a fixture, used by name


@dataclass
class Cache:
    """A worker's cache: what it was told to drop."""

    dropped: list[str] = field(default_factory=list)

    async def drop_repo(self, repo: str) -> int:
        self.dropped.append(repo)
        return 2


async def test_every_worker_carries_out_each_request_once(database: Database) -> None:
    server, worker_a, worker_b = [await open_store(database) for _ in range(3)]
    try:
        await server.request_cache_reset("octo/old")  # before the workers started: not theirs
        seen_a = seen_b = await worker_a.newest_cache_reset()
        assert seen_a > 0
        cache_a, cache_b = Cache(), Cache()
        assert await apply_resets(worker_a, cache_a, seen_a) == seen_a  # nothing new
        first = await server.request_cache_reset("octo/hello")
        second = await server.request_cache_reset("octo/world")
        seen_a = await apply_resets(worker_a, cache_a, seen_a)
        seen_b = await apply_resets(worker_b, cache_b, seen_b)
        assert (seen_a, seen_b) == (second, second)
        assert first < second
        assert cache_a.dropped == cache_b.dropped == ["octo/hello", "octo/world"]
        assert await apply_resets(worker_a, cache_a, seen_a) == second  # not again
        assert cache_a.dropped == ["octo/hello", "octo/world"]
    finally:
        for store in (server, worker_a, worker_b):
            await store.close()
