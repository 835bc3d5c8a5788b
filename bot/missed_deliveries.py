"""Deliveries missed while Gantry was down: read the App's delivery log and ask GitHub to
redeliver the failed ones Gantry never stored (`GET /app/hook/deliveries`, then
`POST /app/hook/deliveries/{id}/attempts`)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
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
# A delivery asked for this many times without Gantry storing it is left to the operator.
MAX_ATTEMPTS = 3
ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class LoggedDelivery:
    """The fields of one delivery-log entry that decide whether to ask for it again."""

    id: int
    guid: str
    delivered_at: datetime.datetime
    status_code: int

    @property
    def missed(self) -> bool:
        """Nothing answered (0) or the server failed: Gantry was down, not refusing it."""
        return self.status_code == 0 or self.status_code >= 500


def parse_entry(item: Mapping[str, Any]) -> LoggedDelivery:
    """A `hook-delivery-item` as the fields used here."""
    when = datetime.datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00"))
    return LoggedDelivery(int(item["id"]), str(item["guid"]), when, int(item["status_code"]))


def to_redeliver(
    entries: Sequence[LoggedDelivery], seen: set[str], now: datetime.datetime, limit: int
) -> list[LoggedDelivery]:
    """The newest attempt of each delivery Gantry never stored, whose every attempt was missed
    (a 4xx is Gantry refusing it: asking again changes nothing), tried fewer than MAX_ATTEMPTS
    times, within the window; newest first, at most `limit`."""
    cutoff = now - RETENTION
    newest = sorted(entries, key=lambda e: e.id, reverse=True)
    attempts = Counter(e.guid for e in newest)
    skip = {e.guid for e in newest if not e.missed} | seen
    picked: dict[str, LoggedDelivery] = {}
    for entry in newest:
        if entry.guid in skip or entry.guid in picked or entry.delivered_at < cutoff:
            continue
        if attempts[entry.guid] < MAX_ATTEMPTS:
            picked[entry.guid] = entry
    return list(picked.values())[:limit]


async def read_log(gh: GitHubAPI, jwt: str, now: datetime.datetime) -> list[LoggedDelivery]:
    """The delivery log, newest first, back to the retention window (at most MAX_ENTRIES)."""
    entries: list[LoggedDelivery] = []
    async for item in gh.getiter(f"/app/hook/deliveries?per_page={PER_PAGE}", jwt=jwt):
        entry = parse_entry(item)
        if entry.delivered_at < now - RETENTION:
            break
        entries.append(entry)
        if len(entries) >= MAX_ENTRIES:  # no page past the bound is asked for
            break
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
        except Exception:  # the store, or a defect: the next pass may fare better
            log.exception("the pass over the App's delivery log failed")
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
