"""Deliveries accepted together go into SQLite as one statement per table.

The store's thread runs SQLite, and every statement releases the GIL and takes it back; while
the event loop is busy answering webhooks, each take can wait for the loop's next pause. A
burst of accepts written one by one (a savepoint, two inserts and a release each) crossed
that line dozens of times per commit; as a group they cross it a handful of times.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# SQLite binds at most 32,766 variables per statement; five per inbox row.
CHUNK = 1000
Row = tuple[str, str, str]  # delivery id, event, payload
FAILED = "failed"  # runner.store.InboxState.FAILED (which imports this module)


@dataclass
class AcceptGroup:
    """Accepts gathered on the loop until the store's thread takes them (then it is closed)."""

    rows: list[Row] = field(default_factory=list)
    closed: bool = False
    result: asyncio.Future[list[bool]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def join(self, row: Row) -> int | None:
        """Add a row while the group is open; its index, or None once it is closed."""
        with self.lock:
            if self.closed:
                return None
            self.rows.append(row)
            return len(self.rows) - 1

    def take(self) -> list[Row]:
        """Close the group (store thread): the rows it holds are all it will ever hold."""
        with self.lock:
            self.closed = True
            return list(self.rows)


def firsts(rows: Sequence[Row]) -> list[bool]:
    """Whether each row is the first of its delivery id in `rows`. Pure."""
    seen: set[str] = set()
    out = []
    for delivery_id, _, _ in rows:
        out.append(delivery_id not in seen)
        seen.add(delivery_id)
    return out


def accept_rows(
    conn: sqlite3.Connection, rows: Sequence[Row], now: float, pending: str
) -> list[bool]:
    """Claim each delivery and keep it in the inbox; per row, False when it was seen before
    (stored earlier, or earlier in `rows`), unless the inbox had given up on it."""
    first = firsts(rows)
    ids = [row[0] for row, is_first in zip(rows, first, strict=True) if is_first]
    known: set[str] = set()
    for chunk in chunks(ids):
        marks = ", ".join("?" * len(chunk))
        sql = f"select id from deliveries where id in ({marks})"  # noqa: S608 (marks only)
        known.update(r[0] for r in conn.execute(sql, chunk))
    firsts_known = [r for r, f in zip(rows, first, strict=True) if f and r[0] in known]
    again = revive_failed(conn, firsts_known, now, pending)
    fresh = [r for r, f in zip(rows, first, strict=True) if f and r[0] not in known]
    for chunk in chunks(fresh):
        insert(conn, "deliveries (id, event, received_at)", [(i, e, now) for i, e, _ in chunk])
        insert(
            conn,
            "inbox (delivery_id, event, payload, state, updated_at)",
            [(i, e, p, pending, now) for i, e, p in chunk],
        )
    return [
        is_first and (row[0] not in known or row[0] in again)
        for row, is_first in zip(rows, first, strict=True)
    ]


def revive_failed(
    conn: sqlite3.Connection, rows: Sequence[Row], now: float, pending: str
) -> set[str]:
    """Deliveries seen before that the inbox kept as failed, pending again with the payload
    they came back with: the operator redelivered them once the cause was fixed. Their ids.
    (Rare: one statement each.)"""
    again = set()
    for delivery_id, _, payload in rows:
        cursor = conn.execute(
            "update inbox set state = ?, attempts = 0, outcome = '', reason = '', payload = ?, "
            "updated_at = ? where delivery_id = ? and state = ?",
            (pending, payload, now, delivery_id, FAILED),
        )
        if cursor.rowcount:
            again.add(delivery_id)
    return again


def insert(conn: sqlite3.Connection, into: str, values: Sequence[tuple[Any, ...]]) -> None:
    """One multi-row insert."""
    row = "(" + ", ".join("?" * len(values[0])) + ")"
    sql = f"insert into {into} values {', '.join([row] * len(values))}"  # noqa: S608 (ours)
    conn.execute(sql, [value for item in values for value in item])


def chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]
