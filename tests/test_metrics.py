"""The metrics module on its own: bounded labels, the store's counts, the collector, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest
from pydantic import ValidationError

from bot.intake import Outcome
from config.settings import Settings
from gantry.metrics import HANDLED_OUTCOMES, TASK_STATES, Metrics, TaskCounts, serving
from runner.results import Conclusion, Phase, PhaseStatus, TaskResult
from runner.store import SQLiteTaskStore, TaskState
from tests.support import parse_scrape, scrape
from tests.test_task_store import TASK


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_store_counts_tasks_by_state_and_knows_the_oldest_queued(tmp_path: Path) -> None:
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    try:
        assert await store.state_counts() == ({}, None)
        first = await store.add_task(TASK, "d1")
        second = await store.add_task(TASK, "d2")
        third = await store.add_task(TASK, "d3")
        assert await store.state_counts() == ({"queued": 3}, first.created_at)
        await store.set_state(first.id, TaskState.RUNNING)
        assert await store.state_counts() == ({"queued": 2, "running": 1}, second.created_at)
        await store.set_state(first.id, TaskState.SUCCEEDED)
        await store.set_state(second.id, TaskState.FAILED)
        counts = ({"queued": 1, "succeeded": 1, "failed": 1}, third.created_at)
        assert await store.state_counts() == counts
        await store.set_state(third.id, TaskState.CANCELLED)
        assert (await store.state_counts())[1] is None
    finally:
        await store.close()


@pytest.fixture
async def metrics_url() -> AsyncIterator[tuple[Metrics, str]]:
    metrics = Metrics()
    server = TestServer(metrics.app())
    await server.start_server()
    yield metrics, str(server.make_url("/metrics"))
    await server.close()


async def test_tasks_queue_depth_and_age_are_read_at_scrape_time(
    metrics_url: tuple[Metrics, str],
) -> None:
    metrics, url = metrics_url
    counts: list[TaskCounts] = [({"queued": 3, "running": 1, "succeeded": 7}, 940.0)]

    async def count() -> TaskCounts:
        return counts[-1]

    metrics.watch_tasks(count)
    assert metrics.tasks is not None
    metrics.tasks.clock = Clock(1000.0)
    first = await scrape(url)
    assert first.series("gantry_tasks") == {
        (("state", "queued"),): 3,
        (("state", "running"),): 1,
        (("state", "succeeded"),): 7,
        (("state", "failed"),): 0,
        (("state", "cancelled"),): 0,
    }
    assert (first("gantry_queue_depth"), first("gantry_queue_oldest_age_seconds")) == (3, 60)
    counts.append(({"succeeded": 11}, None))
    second = await scrape(url)
    assert (second("gantry_tasks", state="queued"), second("gantry_tasks", state="succeeded")) == (
        0,
        11,
    )
    assert (second("gantry_queue_depth"), second("gantry_queue_oldest_age_seconds")) == (0, 0)


async def test_a_failing_store_leaves_the_other_metrics_served(
    metrics_url: tuple[Metrics, str],
) -> None:
    metrics, url = metrics_url

    async def broken() -> TaskCounts:
        raise OSError("disk I/O error")

    metrics.watch_tasks(broken)
    metrics.delivery_answered("accepted")
    scraped = await scrape(url)
    assert scraped("gantry_webhook_deliveries_total", outcome="accepted") == 1
    assert scraped("gantry_tasks", state="queued") == 0


def test_labels_stay_within_their_fixed_sets() -> None:
    metrics = Metrics()
    metrics.delivery_answered("octo/hello#12")
    metrics.delivery_handled(["queued", "answered", "task 4711 of octo/hello"])
    metrics.delivery_handled([])
    metrics.phase_ended(Phase("a-phase-named-by-a-repo", PhaseStatus.DONE, 2.0))
    metrics.phase_ended(Phase("agent", PhaseStatus.RUNNING))  # not ended: not observed
    metrics.phase_ended(Phase("checks", PhaseStatus.FAILED, 3.0))
    metrics.gateway_request("mistral", 999)
    metrics.gateway_usage("openai", 120, 7)
    metrics.task_finished(TaskResult(Conclusion.PUBLISHED))

    scraped = parse_scrape(generate_latest(metrics.registry).decode())
    assert scraped("gantry_webhook_deliveries_total", outcome="other") == 1
    handled = scraped.series("gantry_deliveries_handled_total")
    assert handled[(("outcome", "queued"),)] == 1
    assert handled[(("outcome", "answered"),)] == 1
    assert handled[(("outcome", "ignored"),)] == 1
    assert handled[(("outcome", "other"),)] == 1
    phases = scraped.series("gantry_phase_duration_seconds_count")
    assert phases == {
        (("outcome", "done"), ("phase", "other")): 1,
        (("outcome", "failed"), ("phase", "checks")): 1,
    }
    assert scraped("gantry_gateway_requests_total", provider="other", status="other") == 1
    assert scraped("gantry_gateway_tokens_total", provider="openai", direction="input") == 120
    assert scraped("gantry_gateway_tokens_total", provider="openai", direction="output") == 7
    assert scraped("gantry_tasks_finished_total", conclusion="published") == 1
    every_label_value = {value for (_, labels) in scraped.samples for _, value in labels}
    assert not any("/" in value or "#" in value for value in every_label_value)


def test_the_label_sets_are_the_states_and_outcomes_the_parts_use() -> None:
    assert set(TASK_STATES) == {state.value for state in TaskState}
    assert set(HANDLED_OUTCOMES) == {outcome.value for outcome in Outcome} | {"failed"}


def test_two_apps_never_share_a_count() -> None:
    first, second = Metrics(), Metrics()
    first.cache_lookup(True)
    hits = [
        parse_scrape(generate_latest(m.registry).decode())(
            "gantry_cache_lookups_total", result="hit"
        )
        for m in (first, second)
    ]
    assert hits == [1, 0]


@pytest.mark.parametrize(
    ("address", "bind"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("10.0.0.5:80", ("10.0.0.5", 80)),
    ],
)
def test_the_metrics_address_is_host_and_port(address: str, bind: tuple[str, int]) -> None:
    assert Settings(metrics_address=address).metrics_bind == bind


@pytest.mark.parametrize("address", ["9464", "localhost", ":9464", "host:99999", "host:port"])
def test_a_bad_metrics_address_is_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="is not HOST:PORT"):
        Settings(metrics_address=address)


def test_metrics_are_off_unless_an_address_is_set() -> None:
    assert Settings().metrics_bind is None


async def test_the_listener_serves_only_metrics_and_goes_with_its_context() -> None:
    metrics = Metrics()
    async with serving(metrics, ("127.0.0.1", 0)) as port:
        assert port is not None
        assert metrics.address == ("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/metrics"
        scraped = await scrape(url)
        assert scraped("gantry_cache_lookups_total", result="miss") == 0
        openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers=openmetrics) as response:
                assert response.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await response.text()).endswith("# EOF\n")
            async with session.get(f"http://127.0.0.1:{port}/webhook") as response:
                assert response.status == 404
    assert metrics.address is None
    async with serving(metrics, None) as nothing:
        assert nothing is None
