"""The retention pass drops what handled deliveries leave in the store (their inbox rows at
once; their ids and effects after a month) and keeps what dedup and retries still need: the
records of a pending delivery, and any id younger than the window. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runner.retention import DELIVERY_RETENTION_S, prune_forever
from runner.store import InboxState, TaskStore
from tests.store_fixtures import any_store, database

__all__ = ["any_store", "database"]

HANDLED = [f"handled-{i}" for i in range(5)]
PENDING, FAILED = "pending-1", "failed-1"
REPLY = "reply"


async def receive(store: TaskStore) -> None:
    """Five handled deliveries that each posted a reply, one still pending (with its reply
    begun), and one the inbox gave up on."""
    for delivery_id in [*HANDLED, PENDING, FAILED]:
        assert await store.accept_delivery(delivery_id, "issue_comment", '{"action":"created"}')
    for delivery_id in [*HANDLED, PENDING]:
        await store.begin_effect(delivery_id, REPLY, "On it.")
        await store.finish_effect(delivery_id, REPLY, f"comment-{delivery_id}")
    for delivery_id in HANDLED:
        await store.settle_delivery(
            delivery_id, InboxState.DONE, attempts=1, outcome="handled", reason=""
        )
    await store.settle_delivery(FAILED, InboxState.FAILED, attempts=5, outcome="failed", reason="x")


async def kept_effects(store: TaskStore) -> set[str]:
    every = [f"comment-{d}" for d in [*HANDLED, PENDING]]
    return await store.claimed_effects(REPLY, every)


async def test_a_pass_drops_handled_inbox_rows_and_keeps_recent_ids(any_store: TaskStore) -> None:
    await receive(any_store)
    assert await any_store.prune_deliveries(time.time() - DELIVERY_RETENTION_S) == len(HANDLED)
    assert await any_store.inbox(InboxState.DONE) == []
    assert [e.delivery_id for e in await any_store.inbox(InboxState.PENDING)] == [PENDING]
    assert [e.delivery_id for e in await any_store.inbox(InboxState.FAILED)] == [FAILED]
    every = {*HANDLED, PENDING, FAILED}
    assert await any_store.seen_deliveries(every) == every  # a redelivery is still a duplicate
    assert not await any_store.accept_delivery(HANDLED[0], "issue_comment", "{}")
    assert len(await kept_effects(any_store)) == len(HANDLED) + 1


async def test_a_pass_drops_old_records_but_a_pending_deliverys(any_store: TaskStore) -> None:
    await receive(any_store)
    later = time.time() + 60  # each of them is now older than the window
    assert await any_store.prune_deliveries(later) > 0
    assert await any_store.seen_deliveries({*HANDLED, PENDING, FAILED}) == {PENDING}
    assert await any_store.inbox(InboxState.FAILED) == []
    assert [e.delivery_id for e in await any_store.inbox(InboxState.PENDING)] == [PENDING]
    assert await kept_effects(any_store) == {f"comment-{PENDING}"}
    assert await any_store.prune_deliveries(later) == 0  # nothing more to drop


async def test_the_hourly_retention_pass_prunes_deliveries(
    any_store: TaskStore, tmp_path: Path
) -> None:
    await receive(any_store)
    pruning = asyncio.create_task(prune_forever(tmp_path, deliveries=any_store.prune_deliveries))
    try:
        async with asyncio.timeout(10):
            while await any_store.inbox(InboxState.DONE):  # noqa: ASYNC110 (no event to await)
                await asyncio.sleep(0.05)
    finally:
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
    assert [e.delivery_id for e in await any_store.inbox(InboxState.PENDING)] == [PENDING]
