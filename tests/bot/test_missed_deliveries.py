"""Which logged deliveries to ask GitHub for again: failed, never stored, within 3 days."""

from __future__ import annotations

import datetime

from bot.missed_deliveries import LoggedDelivery, parse_entry, to_redeliver

NOW = datetime.datetime(2026, 12, 2, 12, tzinfo=datetime.UTC)


def entry(id_: int, guid: str, ok: bool, *, hours_ago: float = 1) -> LoggedDelivery:
    return LoggedDelivery(id_, guid, NOW - datetime.timedelta(hours=hours_ago), ok)


def test_only_failed_unseen_recent_deliveries_are_redelivered_once_each() -> None:
    entries = [
        entry(1, "seen", False),
        entry(2, "answered-later", False),
        entry(3, "answered-later", True),
        entry(4, "missed", False),
        entry(5, "missed", False),
        entry(6, "too-old", False, hours_ago=73),
    ]
    assert to_redeliver(entries, {"seen"}, NOW, 10) == [entries[4]]


def test_redeliveries_per_pass_are_bounded_newest_first() -> None:
    entries = [entry(n, f"g{n}", False) for n in range(1, 6)]
    assert [e.id for e in to_redeliver(entries, set(), NOW, 2)] == [5, 4]


def test_a_logged_item_is_parsed() -> None:
    item = {"id": 12, "guid": "g", "delivered_at": "2026-12-02T11:00:00Z", "status_code": 502}
    assert parse_entry(item) == entry(12, "g", False)
