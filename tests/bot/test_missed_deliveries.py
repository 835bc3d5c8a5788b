"""Which logged deliveries to ask GitHub for again: failed, never stored, within 3 days."""

from __future__ import annotations

import datetime

from bot.missed_deliveries import LoggedDelivery, parse_entry, to_redeliver

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
