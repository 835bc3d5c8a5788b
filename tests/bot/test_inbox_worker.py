"""The inbox's workers under a flood and under failures that are not GitHub's.

A steady flood of verified deliveries must not hold each delivery past its patience, nor
grow the server by its payloads; an error of the store (or a defect) must leave a delivery
retried or kept as failed, never silently pending until the next restart."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from gidgethub import sansio

from bot.inbox import Inbox
from bot.intake_load import IntakeLoad
from runner.store import InboxEntry, InboxState, SQLiteTaskStore

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteTaskStore]:
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    yield store
    await store.close()


def payload(n: int, pad: int = 0) -> str:
    return orjson.dumps({"action": "created", "n": n, "pad": "x" * pad}).decode()


async def accepted(store: SQLiteTaskStore, count: int, pad: int = 0) -> list[str]:
    ids = [f"d{n}" for n in range(count)]
    for n, delivery_id in enumerate(ids):
        assert await store.accept_delivery(delivery_id, "issue_comment", payload(n, pad))
    return ids


def recording() -> tuple[dict[str, int], Callable[[sansio.Event], Awaitable[Sequence[str]]]]:
    """A handler that notes which payload each delivery came with."""
    seen: dict[str, int] = {}

    async def handle(event: sansio.Event) -> Sequence[str]:
        seen[str(event.delivery_id)] = event.data["n"]
        return ["queued"]

    return seen, handle


async def one_delivery_through(store: SQLiteTaskStore, inbox: Inbox) -> InboxEntry | None:
    """One delivery accepted, handled (retries included) and settled: its entry then."""
    [delivery_id] = await accepted(store, 1)
    entry = await store.inbox_entry(delivery_id)
    assert entry is not None
    inbox.submit(entry)
    await asyncio.wait_for(inbox.drain(), 30)
    await inbox.close()
    return await store.inbox_entry(delivery_id)


async def test_deliveries_past_their_patience_are_handled_while_the_webhook_stays_busy(
    store: SQLiteTaskStore,
) -> None:
    clock = Clock()
    handled: list[int] = []
    all_handled = asyncio.Event()

    async def handle(event: sansio.Event) -> Sequence[str]:
        handled.append(event.data["n"])
        if len(handled) == 30:
            all_handled.set()
        return ["queued"]

    load = IntakeLoad(clock=clock)
    inbox = Inbox(store, handle, delays=[], load=load)
    load.enter()  # a flood: some verified request is always being answered
    for entry in [await store.inbox_entry(i) for i in await accepted(store, 30)]:
        assert entry is not None
        inbox.submit(entry)
    clock.now = 5.0  # every one of them arrived more than its 1 s patience ago
    # A delivery's patience counts from its arrival, not from when a worker took it up:
    # none waits another second in the queue, let alone one second per eight. (The store's
    # thread needs real time, a few ms a delivery, so rounds of the loop alone were flaky;
    # a second of real time is what a wrong count of the patience would cost.)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_handled.wait(), 0.9)
    assert sorted(handled) == list(range(30))
    load.leave()
    await inbox.close()


async def test_a_long_flood_waits_in_the_store_not_in_the_servers_memory(
    store: SQLiteTaskStore,
) -> None:
    seen, handle = recording()
    load = IntakeLoad()
    inbox = Inbox(store, handle, delays=[], load=load, held_bytes=MIB)
    ids = await accepted(store, 400, pad=20_000)  # 8 MB of payloads
    load.enter()  # the webhook stays busy: nothing is handled while they queue
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for delivery_id in ids:
            entry = await store.inbox_entry(delivery_id)
            assert entry is not None
            inbox.submit(entry)
            del entry
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held - before < 3 * MIB  # the 1 MiB budget and the jobs' ids, not 8 MB
    load.leave()
    await asyncio.wait_for(inbox.drain(), 60)
    await inbox.close()
    # Each delivery was handled once, with its own payload read back from the store.
    assert seen == {f"d{n}": n for n in range(400)}
    assert await store.inbox(InboxState.PENDING) == []


async def test_an_error_of_the_store_while_handling_is_tried_again(
    store: SQLiteTaskStore,
) -> None:
    calls = 0

    async def handle(event: sansio.Event) -> Sequence[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database is locked")
        return ["queued"]

    inbox = Inbox(store, handle, delays=[0.01, 0.02])
    settled = await one_delivery_through(store, inbox)
    assert settled is not None
    assert (settled.state, settled.attempts, calls) == (InboxState.DONE, 2, 2)


async def test_a_defect_that_never_goes_away_is_kept_as_failed_with_its_reason(
    store: SQLiteTaskStore,
) -> None:
    async def handle(event: sansio.Event) -> Sequence[str]:
        raise RuntimeError("a bug in a router")

    inbox = Inbox(store, handle, delays=[0.01])
    failed = await one_delivery_through(store, inbox)
    assert failed is not None
    assert failed.state is InboxState.FAILED
    assert failed.attempts == 2
    assert failed.reason == "handling failed: RuntimeError: a bug in a router"


class SettleFailsOnce(SQLiteTaskStore):
    failures = 1

    async def settle_delivery(
        self, delivery_id: str, state: InboxState, *, attempts: int, outcome: str, reason: str
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        await super().settle_delivery(
            delivery_id, state, attempts=attempts, outcome=outcome, reason=reason
        )


@pytest.mark.parametrize("first_try_ok", [True, False])
async def test_a_settle_that_fails_leaves_the_delivery_to_another_try(
    tmp_path: Path, first_try_ok: bool
) -> None:
    store = await SettleFailsOnce.open(tmp_path / "gantry.db")
    calls = 0

    async def handle(event: sansio.Event) -> Sequence[str]:
        nonlocal calls
        calls += 1
        if not first_try_ok and calls == 1:
            raise TimeoutError("GitHub took too long")
        return ["queued"]

    inbox = Inbox(store, handle, delays=[0.01, 0.02, 0.04])
    settled = await one_delivery_through(store, inbox)
    await store.close()
    assert settled is not None
    assert settled.state is InboxState.DONE
    assert calls == 2


async def test_a_restart_with_a_long_backlog_reads_the_payloads_one_at_a_time(
    store: SQLiteTaskStore,
) -> None:
    seen, handle = recording()
    await accepted(store, 300, pad=20_000)  # 6 MB of payloads left pending by a crash
    load = IntakeLoad()
    inbox = Inbox(store, handle, delays=[], load=load, held_bytes=MIB)
    load.enter()  # nothing is handled while they are queued
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        assert await inbox.resume() == 300
        gc.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 2 * MIB  # ids, not the 6 MB of payloads
    load.leave()
    await asyncio.wait_for(inbox.drain(), 60)
    await inbox.close()
    assert seen == {f"d{n}": n for n in range(300)}
