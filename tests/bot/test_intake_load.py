"""Background work gives way to the webhook, but never waits past its patience."""

from __future__ import annotations

import asyncio
import time

from bot.intake_load import IntakeLoad


async def test_quiet_at_once_when_nothing_came_in() -> None:
    load = IntakeLoad(quiet_after=5.0)
    started = time.monotonic()
    await load.quiet(patience=10.0)
    assert time.monotonic() - started < 0.5


async def test_quiet_waits_for_the_request_in_flight_and_the_gap_after_it() -> None:
    load = IntakeLoad(quiet_after=0.05)
    load.enter()
    waiting = asyncio.ensure_future(load.quiet(patience=10.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # a request is still in flight
    load.leave()
    left_at = time.monotonic()
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - left_at >= 0.04  # and then the quiet gap


async def test_a_flood_never_holds_background_work_past_its_patience() -> None:
    load = IntakeLoad(quiet_after=0.05)
    load.enter()
    started = time.monotonic()
    await asyncio.wait_for(load.quiet(patience=0.3), 5)
    assert 0.25 <= time.monotonic() - started < 2
    load.leave()
    assert load.in_flight == 0


async def test_a_request_in_flight_holds_background_work_with_the_default_gap() -> None:
    load = IntakeLoad()  # quiet_after 0: no gap after the answer, but never during it
    load.enter()
    waiting = asyncio.ensure_future(load.quiet(patience=10.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    load.leave()
    await asyncio.wait_for(waiting, 5)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def arrive(load: IntakeLoad, clock: Clock, count: int, every: float) -> None:
    """`count` requests, each answered at once, `every` seconds apart."""
    for _ in range(count):
        load.enter()
        load.leave()
        clock.now += every


def test_a_steady_trickle_is_never_a_burst() -> None:
    clock = Clock()
    load = IntakeLoad(clock=clock)
    for _ in range(200):  # 200 deliveries/s for a second: handled in the gaps
        arrive(load, clock, 1, 0.005)
        assert load.wait_left() == 0.0


def test_a_burst_holds_background_work_until_it_has_passed() -> None:
    clock = Clock()
    load = IntakeLoad(clock=clock, burst_size=20, burst_window=0.05)
    first = clock.now
    arrive(load, clock, 19, 0.001)
    assert load.wait_left() == 0.0  # 19 in the window: not yet a burst
    arrive(load, clock, 1, 0.001)
    assert abs(load.wait_left() - (first + 0.05 - clock.now)) < 1e-9  # until the first leaves
    clock.now = first + 0.05
    assert load.wait_left() == 0.0
    arrive(load, clock, 100, 0.0001)  # a flood: each arrival keeps the window full
    assert load.wait_left() > 0.04


async def test_a_burst_gives_way_within_the_patience_but_never_past_it() -> None:
    load = IntakeLoad(burst_size=5, burst_window=60.0)
    for _ in range(5):
        load.enter()
        load.leave()
    started = time.monotonic()
    await asyncio.wait_for(load.quiet(patience=0.3), 5)
    assert 0.25 <= time.monotonic() - started < 2
