"""After a PostgreSQL restart (simulated: every connection to the test's database terminated),
wakeups are sent and received again, a SIGTERM drain still requeues what ran, a take-back's
given-up task is still reported, and no store call fails on a connection the restart closed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import psycopg
import pytest_asyncio

from config.database import Database
from runner.pg_queue import PostgresQueue
from runner.pg_store import CHANNEL, POOL_SIZE, PostgresTaskStore
from runner.results import TaskResult
from runner.task import Task, TaskState
from runner.worker import LeaseTimes, Worker, recover_interrupted
from tests.postgres import restart_database
from tests.test_task_store import TASK

FAST = LeaseTimes(lease=10.0, heartbeat=0.2, poll=30.0)


@pytest_asyncio.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresTaskStore]:
    opened = await PostgresTaskStore.open(Database(postgres_url))
    yield opened
    await opened.close()


@pytest_asyncio.fixture
async def queue(postgres_url: str) -> AsyncIterator[PostgresQueue]:
    opened = await PostgresQueue.open(Database(postgres_url))
    yield opened
    await opened.close()


async def woken_by_another_process(queue: PostgresQueue, url: str, tries: int = 20) -> bool:
    """Whether a NOTIFY from another connection wakes `queue.wait` (within `tries` seconds)."""
    for _ in range(tries):
        await queue.wait(0)  # forget any earlier wakeup
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"notify {CHANNEL}")
        started = time.monotonic()
        await queue.wait(1.0)
        if time.monotonic() - started < 0.9:
            return True
    return False


async def test_wakeups_are_sent_and_received_after_a_restart(
    queue: PostgresQueue, postgres_url: str
) -> None:
    await queue.put(1)
    assert restart_database(postgres_url) >= 2
    with psycopg.connect(postgres_url, autocommit=True) as observer:
        observer.execute(f"listen {CHANNEL}")
        await queue.put(2)
        await queue.put(3)
        received = [n.payload for n in observer.notifies(timeout=2, stop_after=2)]
    assert received == ["2", "3"]
    assert await woken_by_another_process(queue, postgres_url)


async def test_a_drain_after_a_restart_requeues_the_running_task(
    store: PostgresTaskStore, queue: PostgresQueue, postgres_url: str
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def run(_task: Task) -> TaskResult:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:  # the task's cleanup: its containers go
            stopped.set()
        raise AssertionError("not stopped")

    task = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
    worker = Worker(store, queue, run, 1, owner="w", times=FAST)
    serving = asyncio.create_task(worker.serve())
    await asyncio.wait_for(started.wait(), 10)
    restart_database(postgres_url)
    await asyncio.wait_for(worker.finish_running(0.1), 30)  # SIGTERM
    await asyncio.wait_for(serving, 10)
    ended = await store.get(task.id)
    assert stopped.is_set()
    assert ended is not None
    assert ended.state is TaskState.QUEUED


async def test_a_take_back_after_a_restart_still_returns_what_it_gave_up(
    store: PostgresTaskStore, queue: PostgresQueue, postgres_url: str
) -> None:
    twice = await store.add_task(dataclasses.replace(TASK, number=7), "d1")
    await store.claim_next("dead", 0.01)
    await store.bump_attempts(twice.id)  # interrupted once before: given up this time
    once = await store.add_task(dataclasses.replace(TASK, number=8), "d2")
    await store.claim_next("dead", 0.01)
    await asyncio.sleep(0.05)
    restart_database(postgres_url)
    for _ in range(3):  # as the take-back loop does: a failed pass is tried again
        try:
            retried, given_up = await recover_interrupted(store, queue)
            break
        except Exception:  # any failure of a pass: the loop tries again
            retried, given_up = [], []
    assert [t.id for t in retried] == [once.id]
    assert [t.id for t in given_up] == [twice.id]


async def test_no_store_call_fails_on_a_connection_the_restart_closed(
    store: PostgresTaskStore, postgres_url: str
) -> None:
    async def hold_a_connection() -> None:
        async with store.pool.connection() as conn:
            await conn.execute("select pg_sleep(0.2)")

    await asyncio.gather(*(hold_a_connection() for _ in range(POOL_SIZE)))  # all opened
    assert restart_database(postgres_url) >= POOL_SIZE
    failures = 0
    async with asyncio.timeout(10):  # not one at a time, each after a longer wait
        for i in range(POOL_SIZE + 2):
            try:
                await store.accept_delivery(f"g{i}", "issue_comment", "{}")
            except psycopg.OperationalError:
                failures += 1
    assert failures == 0
