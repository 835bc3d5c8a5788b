"""Which logged deliveries to ask GitHub for again (failed, never stored, within 3 days),
the periodic pass, and the bound on how much of the log is read."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from gidgethub.aiohttp import GitHubAPI

from bot.github_app import USER_AGENT, app_jwt
from bot.missed_deliveries import (
    MAX_ENTRIES,
    PER_PAGE,
    LoggedDelivery,
    parse_entry,
    read_log,
    recover_periodically,
    to_redeliver,
)
from config.settings import Settings
from forge.localnet import free_port
from forge.sender import build_delivery
from forge.server import Forge
from runner.store import SQLiteTaskStore

NOW = datetime.datetime(2026, 12, 2, 12, tzinfo=datetime.UTC)


def entry(id_: int, guid: str, status: int, *, hours_ago: float = 1) -> LoggedDelivery:
    return LoggedDelivery(id_, guid, NOW - datetime.timedelta(hours=hours_ago), status)


def test_only_missed_unseen_recent_deliveries_are_redelivered_once_each() -> None:
    entries = [
        entry(1, "seen", 0),
        entry(2, "answered-later", 0),
        entry(3, "answered-later", 200),
        entry(4, "missed", 0),
        entry(5, "missed", 502),
        entry(6, "too-old", 0, hours_ago=73),
        entry(7, "refused", 401),
        entry(8, "tried-enough", 0),
        entry(9, "tried-enough", 0),
        entry(10, "tried-enough", 0),
    ]
    assert to_redeliver(entries, {"seen"}, NOW, 10) == [entries[4]]


def test_redeliveries_per_pass_are_bounded_newest_first() -> None:
    entries = [entry(n, f"g{n}", 0) for n in range(1, 6)]
    assert [e.id for e in to_redeliver(entries, set(), NOW, 2)] == [5, 4]


def test_a_logged_item_is_parsed() -> None:
    item = {"id": 12, "guid": "g", "delivered_at": "2026-12-02T11:00:00Z", "status_code": 502}
    assert parse_entry(item) == entry(12, "g", 502)


# ---- against the stand-in ---------------------------------------------------------------

LOG_PATH = "/app/hook/deliveries"


def app_settings(forge: Forge, tmp_path: Path, interval: float = 300.0) -> Settings:
    creds = forge.register_app("gantry")
    forge.install(creds.app_id, "octo", [])
    return Settings(
        github_webhook_secret="s",
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=tmp_path / "data",
        delivery_log_interval=interval,
    )


def log_reads(forge: Forge) -> int:
    return sum(1 for r in forge.requests if r.method == "GET" and r.path.startswith(LOG_PATH))


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait for `condition` (a wide bound: the pass runs every 0.1 s)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (the stand-in's state has no event to await)
            await asyncio.sleep(0.02)


async def test_a_delivery_missed_after_the_first_pass_is_redelivered_by_a_later_one(
    forge: Forge, tmp_path: Path
) -> None:
    settings = app_settings(forge, tmp_path, interval=0.1)
    [app_id] = forge.state.apps
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    async with aiohttp.ClientSession() as session:
        passes = asyncio.create_task(recover_periodically(session, settings, store))
        try:
            await until(lambda: log_reads(forge) >= 1)
            down = f"http://127.0.0.1:{free_port()}/webhook"
            delivery = build_delivery("ping", {"zen": "Keep it logically awesome."}, "s")
            await forge.hook_log(app_id).send(down, delivery, redelivery=False, when=time.time())
            await until(lambda: any(e.redelivery for e in forge.hook_log(app_id).entries))
        finally:
            passes.cancel()
            await store.close()
    [missed, again] = forge.hook_log(app_id).entries
    assert again.delivery.delivery_id == missed.delivery.delivery_id


class StoreFailingOnce(SQLiteTaskStore):
    failures = 1

    async def seen_deliveries(self, delivery_ids: set[str]) -> set[str]:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return await super().seen_deliveries(delivery_ids)


async def test_a_pass_the_store_fails_is_not_the_last(forge: Forge, tmp_path: Path) -> None:
    settings = app_settings(forge, tmp_path, interval=0.1)
    [app_id] = forge.state.apps
    down = f"http://127.0.0.1:{free_port()}/webhook"
    delivery = build_delivery("ping", {"zen": "Approachable is better than simple."}, "s")
    await forge.hook_log(app_id).send(down, delivery, redelivery=False, when=time.time())
    store = await StoreFailingOnce.open(tmp_path / "gantry.db")
    async with aiohttp.ClientSession() as session:
        passes = asyncio.create_task(recover_periodically(session, settings, store))
        try:
            # The first pass dies in the store; a later one still asks for the missed delivery.
            await until(lambda: any(e.redelivery for e in forge.hook_log(app_id).entries))
        finally:
            passes.cancel()
            await store.close()


async def test_reading_the_log_stops_at_its_bound(forge: Forge, tmp_path: Path) -> None:
    settings = app_settings(forge, tmp_path)
    [app_id] = forge.state.apps
    log = forge.hook_log(app_id)
    delivery = build_delivery("ping", {"zen": "Half measures are as bad as nothing at all."}, "s")
    for _ in range(MAX_ENTRIES + 2 * PER_PAGE + 1):
        log.record("http://gantry.invalid/webhook", delivery, 0, redelivery=False, when=time.time())
    now = datetime.datetime.now(datetime.UTC)
    async with aiohttp.ClientSession() as session:
        gh = GitHubAPI(session, USER_AGENT, base_url=settings.api_url)
        entries = await read_log(gh, app_jwt(settings), now)
    newest = len(log.entries)
    assert [e.id for e in entries] == list(range(newest, newest - MAX_ENTRIES, -1))
    assert log_reads(forge) == MAX_ENTRIES // PER_PAGE  # the pages past the bound are not read
