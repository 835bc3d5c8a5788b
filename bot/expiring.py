"""Values kept for a while, in memory, and forgotten once expired: a server that runs for
months must not keep every user who ever commented."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# Below this many entries nothing is swept: a sweep is a pass over every entry.
MIN_SWEEP = 1024


class Expiring(Generic[K, V]):
    """A value per key for `ttl` seconds. Expired entries are dropped whenever the cache
    has doubled since its last sweep, so it holds about what one `ttl` brought in."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._sweep_at = MIN_SWEEP

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value, while it is fresh."""
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `ttl` seconds from now."""
        now = self._clock()
        self._entries[key] = (now + self._ttl, value)
        if len(self._entries) >= self._sweep_at:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            self._sweep_at = max(MIN_SWEEP, 2 * len(self._entries))
