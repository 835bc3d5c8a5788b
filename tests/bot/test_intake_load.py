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
