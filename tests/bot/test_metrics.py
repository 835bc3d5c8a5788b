"""Delivery metrics through the real app: signed deliveries in, `/metrics` scraped after."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from aiohttp.test_utils import TestServer

from bot.inbox import retry_delays
from gantry.metrics import METRICS
from tests.bot.conftest import READER, SECRET, Gantry
from tests.bot.test_intake import PERMISSION_ROUTE, comment
from tests.bot.test_webhook import signed
from tests.support import Scrape, scrape

MENTION = "@gantry fix the flaky date test"


@pytest_asyncio.fixture
async def metrics_url(gantry: Gantry) -> AsyncIterator[str]:
    """The app's own `/metrics` handler and registry, on a test server of its own."""
    server = TestServer(gantry.server.app[METRICS].app())
    await server.start_server()
    yield str(server.make_url("/metrics"))
    await server.close()


def delivered(scraped: Scrape, outcome: str) -> float:
    return scraped("gantry_webhook_deliveries_total", outcome=outcome)


def handled(scraped: Scrape, outcome: str) -> float:
    return scraped("gantry_deliveries_handled_total", outcome=outcome)


async def test_deliveries_are_counted_by_outcome_with_their_latency(
    gantry: Gantry, metrics_url: str
) -> None:
    before = await scrape(metrics_url)
    assert delivered(before, "accepted") == 0
    assert before("gantry_webhook_latency_seconds_count") == 0
    payload = gantry.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    mention = gantry.delivery("issue_comment", payload, body=MENTION, number=gantry.issue_number)
    assert await gantry.post(mention) == (200, {"outcome": "queued"})
    assert await gantry.post(mention) == (200, {"outcome": "duplicate"})
    forged = gantry.delivery("issue_comment", payload, body=MENTION, secret="not-" + SECRET)
    assert (await gantry.post(forged))[0] == 401
    assert (await gantry.post_raw(b"{not json", signed(b"{not json", "bad")))[0] == 400
    assert (await gantry.post(gantry.delivery("star", gantry.examples("star")[0])))[0] == 202
    assert (await gantry.post(gantry.delivery("ping", gantry.examples("ping")[0])))[0] == 200
    status, answer = await comment(gantry, MENTION, sender=READER)
    assert (status, answer) == (200, {"outcome": "refused"})
    await gantry.settle()

    after = await scrape(metrics_url)
    edge = {
        "accepted": 2, "duplicate": 1, "forged": 1, "malformed": 1, "ignored": 1, "pong": 1,
        "too_large": 0,
    }  # fmt: skip
    assert {outcome: delivered(after, outcome) for outcome in edge} == edge
    assert after("gantry_webhook_latency_seconds_count") == sum(edge.values())
    assert after("gantry_webhook_latency_seconds_sum") > 0
    assert {o: handled(after, o) for o in ("queued", "refused", "failed", "answered")} == {
        "queued": 1,
        "refused": 1,
        "failed": 0,
        "answered": 0,
    }
    assert after("gantry_tasks", state="queued") == 1
    assert after("gantry_tasks", state="succeeded") == 0
    assert after("gantry_queue_depth") == 1
    assert 0 <= after("gantry_queue_oldest_age_seconds") < 600


async def test_a_delivery_failing_after_its_retries_is_counted_once_as_failed(
    gantry: Gantry, metrics_url: str
) -> None:
    gantry.forge.inject_fault("GET", PERMISSION_ROUTE, "error", count=None, status=502)
    assert await comment(gantry, "@gantry go") == (200, {"outcome": "failed"})
    scraped = await scrape(metrics_url)
    settings = gantry.settings
    retries = len(retry_delays(settings.inbox_retry_first, settings.inbox_retry_limit))
    assert retries > 0
    assert delivered(scraped, "accepted") == 1
    assert handled(scraped, "failed") == 1
    assert handled(scraped, "queued") == 0
    assert scraped("gantry_delivery_retries_total") == retries
    assert scraped("gantry_tasks", state="queued") == 0


async def test_metrics_are_not_served_on_the_webhook_port(gantry: Gantry) -> None:
    assert gantry.settings.metrics_address is None
    async with (
        aiohttp.ClientSession() as session,
        session.get(gantry.server.make_url("/metrics")) as response,
    ):
        assert response.status in {404, 405}
        text = await response.text()
    assert "gantry_" not in text
    assert SECRET not in text


async def test_nothing_secret_is_in_the_scrape(gantry: Gantry, metrics_url: str) -> None:
    assert await comment(gantry, MENTION) == (200, {"outcome": "queued"})
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    private_key = gantry.creds.private_key_pem.splitlines()[1]
    assert SECRET not in text
    assert private_key not in text
    assert "octo/hello" not in text
    assert "alice" not in text
    [task] = await gantry.tasks()
    assert f'"{task.id}"' not in text
