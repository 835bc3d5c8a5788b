"""One suite, both stores: SQLite (the default) and PostgreSQL behave the same."""

from __future__ import annotations

import asyncio
import dataclasses

from config.database import Database
from runner.results import Phase, PhaseStatus
from runner.store import InboxState, TaskStore
from runner.stores import open_store
from runner.task import TaskBranch, TaskState
from tests.store_fixtures import any_store, database
from tests.test_task_store import TASK

__all__ = ["any_store", "database"]  # fixtures, used by name


async def test_a_delivery_is_claimed_once_even_when_raced(any_store: TaskStore) -> None:
    claims = await asyncio.gather(*(any_store.claim_delivery("d1", "issue") for _ in range(20)))
    assert claims.count(True) == 1
    await any_store.release_delivery("d1")
    assert await any_store.claim_delivery("d1", "issue")


async def test_the_inbox_keeps_order_state_and_payload(any_store: TaskStore) -> None:
    for n in range(3):
        assert await any_store.accept_delivery(f"d{n}", "issue_comment", f'{{"n": {n}}}')
    assert not await any_store.accept_delivery("d1", "issue_comment", "{}")
    pending = await any_store.inbox(InboxState.PENDING)
    assert [e.delivery_id for e in pending] == ["d0", "d1", "d2"]
    assert pending[1].payload == '{"n": 1}'
    await any_store.settle_delivery("d1", InboxState.DONE, attempts=2, outcome="queued", reason="")
    await any_store.settle_delivery(
        "d2", InboxState.FAILED, attempts=3, outcome="failed", reason="GitHub failed"
    )
    done = await any_store.inbox_entry("d1")
    assert done is not None
    assert (done.state, done.attempts, done.outcome, done.payload) == (
        InboxState.DONE,
        2,
        "queued",
        "",
    )
    failed = await any_store.inbox(InboxState.FAILED)
    assert [(e.delivery_id, e.reason, e.payload) for e in failed] == [
        ("d2", "GitHub failed", '{"n": 2}')
    ]
    assert await any_store.inbox_entry("nope") is None
    assert await any_store.seen_deliveries({"d0", "d2", "x"}) == {"d0", "d2"}


async def test_tasks_round_trip_every_field(any_store: TaskStore) -> None:
    picked = dataclasses.replace(
        TASK, is_pull_request=True, head_ref="feature", head_sha="a" * 40, comment_id=2**40,
        agent="claude", model="m", context='{"path": "a.py"}',
    )  # fmt: skip
    added = await any_store.add_task(picked, "d1")
    assert (added.state, added.delivery_id) == (TaskState.QUEUED, "d1")
    stored = await any_store.get(added.id)
    assert stored == added
    assert stored is not None
    assert stored.is_pull_request is True
    assert await any_store.task_for_delivery("d1") == added
    assert await any_store.task_for_delivery("d2") is None
    assert await any_store.get(added.id + 100) is None


async def test_threads_states_and_listings(any_store: TaskStore) -> None:
    first = await any_store.add_task(TASK, "a")
    second = await any_store.add_task(TASK, "b")
    other = await any_store.add_task(dataclasses.replace(TASK, number=8), "c")
    moved = await any_store.set_state(first.id, TaskState.SUCCEEDED)
    assert moved is not None
    assert moved.state is TaskState.SUCCEEDED
    assert moved.updated_at >= first.updated_at
    assert [t.id for t in await any_store.thread_tasks("octo/hello", 7)] == [first.id, second.id]
    latest = await any_store.latest_for_thread("octo/hello", 7)
    assert latest is not None
    assert latest.id == second.id
    assert await any_store.latest_for_thread("octo/hello", 99) is None
    assert [t.id for t in await any_store.with_state(TaskState.QUEUED)] == [second.id, other.id]
    listed = await any_store.repo_tasks("octo/hello", 2)
    assert [t.id for t in listed] == [other.id, second.id]
    assert await any_store.set_state(999, TaskState.FAILED) is None


async def test_attempts_phases_usage_and_branches(any_store: TaskStore) -> None:
    task = await any_store.add_task(TASK, "a")
    assert [await any_store.bump_attempts(task.id) for _ in range(2)] == [1, 2]
    await any_store.record_phase(task.id, Phase("agent", PhaseStatus.RUNNING))
    await any_store.record_phase(task.id, Phase("prepare", PhaseStatus.DONE, 1.5, "ok"))
    await any_store.record_phase(task.id, Phase("agent", PhaseStatus.DONE, 3.0))
    assert await any_store.phases(task.id) == [
        Phase("prepare", PhaseStatus.DONE, 1.5, "ok"),
        Phase("agent", PhaseStatus.DONE, 3.0),
    ]
    assert await any_store.usage(task.id) is None
    await any_store.record_usage(task.id, '{"requests": 1}')
    await any_store.record_usage(task.id, '{"requests": 2}')
    assert await any_store.usage(task.id) == '{"requests": 2}'
    assert await any_store.task_branch(task.id) is None
    assert await any_store.fix_branch(task.id, "gantry/7-a") == "gantry/7-a"
    assert await any_store.fix_branch(task.id, "gantry/7-b") == "gantry/7-a"
    # The commit is kept before its push (a later try's replaces it), its PR after.
    await any_store.record_commit(task.id, "a" * 40, "b" * 40)
    await any_store.record_commit(task.id, "a" * 40, "c" * 40)
    await any_store.record_pull(task.id, "http://forge/pull/1")
    url = "http://forge/pull/1"
    expected = TaskBranch("gantry/7-a", url, start_sha="a" * 40, commit_sha="c" * 40)
    assert await any_store.task_branch(task.id) == expected


async def test_a_deliverys_effect_is_begun_once_and_its_first_text_kept(
    any_store: TaskStore,
) -> None:
    first = await any_store.begin_effect("d-1", "reply", "Cancelled task #1.")
    assert (first.body, first.result, first.fresh) == ("Cancelled task #1.", "", True)
    again = await any_store.begin_effect("d-1", "reply", "Task #1 is **cancelled**.")
    assert (again.body, again.result, again.fresh) == ("Cancelled task #1.", "", False)
    assert again.started_at == first.started_at
    await any_store.finish_effect("d-1", "reply", "issue:7")
    done = await any_store.begin_effect("d-1", "reply", "other")
    assert (done.body, done.result, done.fresh) == ("Cancelled task #1.", "issue:7", False)
    other = await any_store.begin_effect("d-2", "reply", "Cancelled task #1.")
    assert other.fresh
    assert await any_store.claimed_effects("reply", ["issue:7", "issue:8"]) == {"issue:7"}
    assert await any_store.claimed_effects("reply", []) == set()


async def test_refusals_and_installations(any_store: TaskStore) -> None:
    assert await any_store.first_refusal("octo/hello", 1, "d-1")
    assert not await any_store.first_refusal("octo/hello", 1, "d-2")
    assert await any_store.first_refusal("octo/hello", 1, "d-1")  # the inbox tries d-1 again
    assert await any_store.first_refusal("octo/hello", 2, "d-2")
    await any_store.remember_installation(5, "octo")
    await any_store.remember_installation(5, "octo-renamed")
    await any_store.set_installation_repos(5, ["octo/b", "octo/a", "octo/c"], [])
    await any_store.set_installation_repos(5, ["octo/a"], ["octo/c"])
    assert await any_store.installation_repos(5) == ["octo/a", "octo/b"]
    await any_store.forget_installation(5)
    assert await any_store.installation_repos(5) == []
    await any_store.ping()


async def test_what_one_process_stored_another_reads(database: Database) -> None:
    writer, reader = await open_store(database), await open_store(database)
    try:
        task = await writer.add_task(TASK, "a")
        assert await reader.get(task.id) == task
        await reader.set_state(task.id, TaskState.CANCELLED)
        seen = await writer.get(task.id)
        assert seen is not None
        assert seen.state is TaskState.CANCELLED
    finally:
        await writer.close()
        await reader.close()


async def test_a_cancel_changes_only_a_task_still_queued_or_running(any_store: TaskStore) -> None:
    queued = await any_store.add_task(TASK, "a")
    running = await any_store.add_task(dataclasses.replace(TASK, number=8), "b")
    ended = await any_store.add_task(dataclasses.replace(TASK, number=9), "c")
    for _ in range(3):  # one task per thread: all three are claimed
        assert await any_store.claim_next("w", 60) is not None
    assert await any_store.finish_task(queued.id, "w", TaskState.QUEUED)  # a shutdown's requeue
    assert await any_store.finish_task(ended.id, "w", TaskState.FAILED)
    cancelled = [await any_store.cancel_task(t.id) for t in (queued, running, ended)]
    assert [t.state if t else None for t in cancelled] == [
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        None,
    ]
    kept = await any_store.get(ended.id)
    assert kept is not None
    assert kept.state is TaskState.FAILED
    assert await any_store.cancel_task(queued.id) is None  # cancelled already
    assert await any_store.cancel_task(999) is None
