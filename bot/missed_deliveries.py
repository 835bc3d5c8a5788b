"""Deliveries missed while Gantry was down: read the App's delivery log and ask GitHub to
redeliver the failed ones Gantry never stored (`GET /app/hook/deliveries`, then
`POST /app/hook/deliveries/{id}/attempts`)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from bot.github_app import USER_AGENT, app_jwt
from config.settings import Settings
from runner.store import TaskStore

log = logging.getLogger(__name__)

# GitHub keeps the delivery log for 3 days and only redelivers within that window:
# https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
RETENTION = datetime.timedelta(days=3)
PER_PAGE = 100
MAX_ENTRIES = 2000
MAX_REDELIVERIES = 50
ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class LoggedDelivery:
    """The fields of one delivery-log entry that decide whether to ask for it again."""

    id: int
    guid: str
    delivered_at: datetime.datetime
    ok: bool


def parse_entry(item: Mapping[str, Any]) -> LoggedDelivery:
    """A `hook-delivery-item` as the fields used here."""
    when = datetime.datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00"))
    return LoggedDelivery(
        int(item["id"]), str(item["guid"]), when, 200 <= item["status_code"] < 300
    )


def to_redeliver(
    entries: Iterable[LoggedDelivery], seen: set[str], now: datetime.datetime, limit: int
) -> list[LoggedDelivery]:
    """The newest failed attempt of each delivery never stored nor answered, within the window."""
    cutoff = now - RETENTION
    answered = {e.guid for e in entries if e.ok} | seen
    picked: dict[str, LoggedDelivery] = {}
    for entry in sorted(entries, key=lambda e: e.id, reverse=True):
        if entry.guid in answered or entry.guid in picked or entry.delivered_at < cutoff:
            continue
        picked[entry.guid] = entry
    return list(picked.values())[:limit]


async def read_log(gh: GitHubAPI, jwt: str, now: datetime.datetime) -> list[LoggedDelivery]:
    """The delivery log, newest first, back to the retention window (at most MAX_ENTRIES)."""
    entries: list[LoggedDelivery] = []
    async for item in gh.getiter(f"/app/hook/deliveries?per_page={PER_PAGE}", jwt=jwt):
        entry = parse_entry(item)
        if entry.delivered_at < now - RETENTION or len(entries) >= MAX_ENTRIES:
            break
        entries.append(entry)
    return entries


async def recover_periodically(
    session: aiohttp.ClientSession, settings: Settings, store: TaskStore
) -> None:
    """A pass at start-up, then one every DELIVERY_LOG_INTERVAL seconds; never dies of one."""
    while True:
        try:
            await recover(session, settings, store)
        except ERRORS as exc:
            log.warning("could not read the App's delivery log: %s", exc)
        await asyncio.sleep(settings.delivery_log_interval)


async def recover(session: aiohttp.ClientSession, settings: Settings, store: TaskStore) -> int:
    """One pass: ask GitHub to redeliver what Gantry missed; how many it asked for."""
    gh = GitHubAPI(session, USER_AGENT, base_url=settings.api_url)
    jwt = app_jwt(settings)
    now = datetime.datetime.now(datetime.UTC)
    entries = await read_log(gh, jwt, now)
    seen = await store.seen_deliveries({e.guid for e in entries})
    missed = to_redeliver(entries, seen, now, MAX_REDELIVERIES)
    for entry in missed:
        await gh.post(f"/app/hook/deliveries/{entry.id}/attempts", data={}, jwt=jwt)
        log.info("asked GitHub to redeliver missed delivery %s (%s)", entry.guid, entry.id)
    log.info(
        "delivery log read: %d entries, %d missed delivery(ies) redelivered",
        len(entries), len(missed),
    )  # fmt: skip
    return len(missed)
