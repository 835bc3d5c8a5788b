"""The SQLite task store: durable, deduplicating, and one failure never sinks a batch."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from runner.store import InboxState, SQLiteTaskStore
from runner.task import NewTask, TaskState

TASK = NewTask(
    repo="octo/hello",
    installation_id=1,
    number=7,
    is_pull_request=False,
    title="t",
    clone_url="http://x/octo/hello.git",
    default_branch="main",
    comment_id=3,
    comment_kind="issue_comment",
    requester="alice",
    kind="request",
    request="fix it",
    head_ref=None,
    head_sha=None,
    thread_body="It fails at midnight.",
)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteTaskStore]:
    opened = await SQLiteTaskStore.open(tmp_path / "db" / "gantry.db")
    yield opened
    await opened.close()


async def test_concurrent_claims_of_one_delivery_let_exactly_one_through(
    store: SQLiteTaskStore,
) -> None:
    claims = await asyncio.gather(*(store.claim_delivery("d1", "issue_comment") for _ in range(50)))
    assert claims.count(True) == 1


async def test_accepts_in_one_group_each_get_their_own_answer(tmp_path: Path) -> None:
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    assert await store.accept_delivery("old", "issue_comment", '{"n": 0}')
    ids = ["old", "a", "b", "a", "c", "b"] * 3
    answers = await asyncio.gather(
        *(store.accept_delivery(i, "issue_comment", f'{{"id": "{i}"}}') for i in ids)
    )
    assert [i for i, new in zip(ids, answers, strict=True) if new] == ["a", "b", "c"]
    await store.close()
    reopened = await SQLiteTaskStore.open(tmp_path / "gantry.db")  # durable once answered
    pending = await reopened.inbox(InboxState.PENDING)
    assert [(e.delivery_id, e.payload) for e in pending] == [
        ("old", '{"n": 0}'), ("a", '{"id": "a"}'), ("b", '{"id": "b"}'), ("c", '{"id": "c"}'),
    ]  # fmt: skip
    assert await reopened.seen_deliveries({"a", "b", "c", "d"}) == {"a", "b", "c"}
    await reopened.close()


async def test_a_released_delivery_can_be_claimed_again(store: SQLiteTaskStore) -> None:
    assert await store.claim_delivery("d1", "x")
    await store.release_delivery("d1")
    assert await store.claim_delivery("d1", "x")


async def test_a_failing_operation_does_not_undo_its_batch_mates(store: SQLiteTaskStore) -> None:
    async def broken() -> None:
        await store._run(lambda: store.conn.execute("insert into no_such_table values (1)"))

    results = await asyncio.gather(
        store.add_task(TASK, "a"),
        broken(),
        store.add_task(TASK, "b"),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.OperationalError)
    assert [t.delivery_id for t in await store.with_state(TaskState.QUEUED)] == ["a", "b"]


async def test_tasks_survive_a_reopen_and_are_requeued(tmp_path: Path) -> None:
    path = tmp_path / "gantry.db"
    first = await SQLiteTaskStore.open(path)
    kept = await first.add_task(TASK, "a")
    done = await first.add_task(TASK, "b")
    await first.set_state(done.id, TaskState.SUCCEEDED)
    await first.close()
    second = await SQLiteTaskStore.open(path)
    assert [t.id for t in await second.with_state(TaskState.QUEUED)] == [kept.id]
    assert await second.state_counts() == ({"queued": 1, "succeeded": 1}, kept.created_at)
    latest = await second.latest_for_thread("octo/hello", 7)
    assert latest is not None
    assert (latest.id, latest.state) == (done.id, TaskState.SUCCEEDED)
    await second.close()


async def test_one_refusal_per_thread(store: SQLiteTaskStore) -> None:
    assert await store.first_refusal("octo/hello", 1, "d-1")
    assert not await store.first_refusal("octo/hello", 1, "d-2")
    assert await store.first_refusal("octo/hello", 2, "d-2")


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    closed = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    await closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        await closed.ping()


async def test_a_database_from_the_first_release_gains_the_agent_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "create table tasks (id integer primary key autoincrement, repo text not null, "
        "installation_id integer not null, number integer not null, "
        "is_pull_request integer not null, title text not null, clone_url text not null, "
        "default_branch text not null, comment_id integer, comment_kind text not null, "
        "requester text not null, kind text not null, request text not null, head_ref text, "
        "head_sha text, thread_body text not null default '', delivery_id text not null, "
        "state text not null, created_at real not null, updated_at real not null, "
        "attempts integer not null default 0)"
    )
    old.execute(
        "insert into tasks (repo, installation_id, number, is_pull_request, title, clone_url, "
        "default_branch, comment_kind, requester, kind, request, delivery_id, state, "
        "created_at, updated_at) values ('octo/old', 1, 2, 0, 't', 'u', 'main', 'issue_comment', "
        "'bob', 'request', 'old work', 'd0', 'queued', 1, 1)"
    )
    old.commit()
    old.close()
    store = await SQLiteTaskStore.open(path)
    try:
        kept = await store.get(1)
        assert kept is not None
        assert (kept.request, kept.agent, kept.model) == ("old work", None, None)
        picked = NewTask(**{**TASK.__dict__, "agent": "claude", "model": "claude-x"})
        added = await store.add_task(picked, "d1")
        assert (added.agent, added.model) == ("claude", "claude-x")
        again = await store.get(added.id)
        assert again is not None
        assert (again.agent, again.model) == ("claude", "claude-x")
    finally:
        await store.close()


async def test_agent_usage_is_kept_per_task(store: SQLiteTaskStore) -> None:
    assert await store.usage(1) is None
    await store.record_usage(1, '{"requests": 1}')
    await store.record_usage(1, '{"requests": 2}')
    assert await store.usage(1) == '{"requests": 2}'
