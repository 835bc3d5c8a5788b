"""Single flight: concurrent callers with the same key share one in-flight call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """One call per key at a time; whoever asks meanwhile awaits that call's outcome.

    The call runs as its own task, so a caller that is cancelled (its webhook request went
    away) does not cancel it for the others; a failure reaches every caller waiting for it.
    Nothing is kept once the call ends: caching results is the caller's business.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: K, call: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The outcome of `call()`, or of the call for `key` already in flight."""
        task = self._calls.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(call())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            # Marks the failure as seen: the callers got it, or none was left to care.
            task.exception()
