"""Primary rate limits at intake: a near reset is waited out, a far one is answered at once."""

from __future__ import annotations

import logging
import time

import pytest

from tests.bot.conftest import Gantry
from tests.bot.test_intake import PERMISSION_ROUTE, comment


def permission_statuses(gantry: Gantry) -> list[int]:
    return [r.status for r in gantry.forge.requests if r.path.endswith("/permission")]


async def test_a_primary_limit_resetting_soon_is_waited_out(gantry: Gantry) -> None:
    gantry.forge.inject_fault(
        "GET", PERMISSION_ROUTE, "primary_rate_limit", count=None, retry_after=2
    )
    started = time.monotonic()
    assert await comment(gantry, "@gantry fix it") == (200, {"outcome": "queued"})
    assert 2.0 <= time.monotonic() - started < 4.5
    assert permission_statuses(gantry) == [403, 200]


async def test_a_primary_limit_resetting_later_is_not_waited_for(
    gantry: Gantry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.inbox")
    gantry.forge.inject_fault(
        "GET", PERMISSION_ROUTE, "primary_rate_limit", count=None, retry_after=3600
    )
    started = time.monotonic()
    status, answer = await comment(gantry, "@gantry fix it")
    assert time.monotonic() - started < 2.0
    assert (status, answer) == (200, {"outcome": "failed"})
    assert set(permission_statuses(gantry)) == {403}
    assert any("rate-limited until" in r.getMessage() for r in caplog.records)
    assert await gantry.tasks() == []
