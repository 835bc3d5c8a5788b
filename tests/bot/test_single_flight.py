"""Single flight: one call per key in flight, its outcome shared, nothing kept afterwards."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from bot.single_flight import SingleFlight


class Lookup:
    """A call that counts how often it ran and waits until the test lets it answer."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, key: str) -> str:
        self.calls.append(key)
        await self.release.wait()
        if key == "broken":
            raise LookupError(key)
        return key.upper()


async def started(tasks: list[asyncio.Task[str]]) -> None:
    """Let every task reach its await."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)


async def test_concurrent_callers_of_a_key_share_one_call() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    lookup = Lookup()
    keys = ["a"] * 5 + ["b"] * 3
    tasks = [asyncio.create_task(flight.run(k, partial(lookup, k))) for k in keys]
    await started(tasks)
    assert sorted(lookup.calls) == ["a", "b"]
    lookup.release.set()
    assert await asyncio.gather(*tasks) == ["A"] * 5 + ["B"] * 3
    assert len(flight) == 0


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    lookup = Lookup()
    tasks = [asyncio.create_task(flight.run("broken", lambda: lookup("broken"))) for _ in range(3)]
    await started(tasks)
    lookup.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(outcome, LookupError) for outcome in outcomes)
    with pytest.raises(LookupError):
        await flight.run("broken", lambda: lookup("broken"))
    assert lookup.calls == ["broken", "broken"]


async def test_a_cancelled_caller_leaves_the_call_to_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    lookup = Lookup()
    first = asyncio.create_task(flight.run("a", lambda: lookup("a")))
    second = asyncio.create_task(flight.run("a", lambda: lookup("a")))
    await started([first, second])
    first.cancel()
    await asyncio.sleep(0)
    lookup.release.set()
    assert await second == "A"
    assert first.cancelled()
    assert lookup.calls == ["a"]


async def test_a_later_caller_runs_a_new_call() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    lookup = Lookup()
    lookup.release.set()
    assert await flight.run("a", lambda: lookup("a")) == "A"
    assert await flight.run("a", lambda: lookup("a")) == "A"
    assert lookup.calls == ["a", "a"]
