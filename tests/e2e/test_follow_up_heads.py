"""End to end: where a follow-up round starts and what it pushes, when the pull request's
branch moves under it (another round, a person's push) or its worker dies after the push."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from runner.results import PhaseStatus
from runner.task import Task, TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import FINAL, comment_on, config_with, git_show, set_config, wait_final

# Each round writes the same file (so two rounds built on one head conflict) and keeps the
# task file, to show where it started; a round asked "slowly" leaves time to act meanwhile.
AGENT = """\
case "$GANTRY_PROMPT" in *slowly*) sleep 6;; esac
printf 'fixed: %s\\n' "$GANTRY_PROMPT" > fix.txt
cp "$GANTRY_TASK_FILE" task.json
"""


def bot_comments(live: Gantry, number: int) -> list[str]:
    return [
        c["body"] for c in live.forge.comments(OWNER, REPO, number) if c["user"] == "gantry[bot]"
    ]


async def opened_pull(live: Gantry) -> tuple[int, str, str]:
    """A first round on the issue, to its PR: (PR number, branch, the branch's head)."""
    await set_config(live, config_with(AGENT))
    await comment_on(live, live.issue_number, "@gantry fix the flaky date test")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, live.issue_number)
    [pull] = live.forge.pulls(OWNER, REPO)
    return pull.issue.number, pull.head, (await live.forge.branches(OWNER, REPO))[pull.head]


async def head_of(live: Gantry, branch: str) -> str:
    return (await live.forge.branches(OWNER, REPO))[branch]


async def parent(live: Gantry, sha: str) -> str:
    return (await git_show(live.forge, "rev-parse", f"{sha}^")).strip()


async def task_file(live: Gantry, sha: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await git_show(live.forge, "show", f"{sha}:task.json"))
    return data


async def until_ended(live: Gantry, task_id: int, seconds: float = 180) -> Task:
    """Until the task is in a final state (the worker runs it in the background)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = await live.services.store.get(task_id)
        if task is not None and task.state in FINAL:
            await live.settle()
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end in {seconds}s")


async def test_a_round_asked_while_another_runs_builds_on_that_rounds_commit(
    live: Gantry,
) -> None:
    number, branch, opened = await opened_pull(live)
    await comment_on(live, number, "@gantry slowly say hello", pull=True)
    await comment_on(live, number, "@gantry say goodbye", pull=True)
    tasks = await wait_final(live, 3)
    # Asked while the first follow-up ran: the PR's head then was still the first round's.
    assert tasks[2].head_sha == opened
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 3, bot_comments(live, number)
    head = await head_of(live, branch)
    hello = await parent(live, head)
    assert await parent(live, hello) == opened
    # The last round started from the round before it, not from the head it was asked on.
    assert (await task_file(live, head))["base_sha"] == hello
    assert await git_show(live.forge, "show", f"{head}:fix.txt") == "fixed: say goodbye\n"
    # Its check run was opened on the commit it started from (and moved on to its own), not
    # on the head it was asked on.
    runs = live.forge.check_runs(OWNER, REPO)
    [started] = [r for r in runs if head[:7] in str(r["output"].get("title", ""))]
    assert started["head_sha"] == hello, runs


async def until_agent_runs(live: Gantry, number: int, seconds: float = 120) -> Task:
    """The PR's round, once its agent runs."""
    store = live.services.store
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for task in await store.thread_tasks(f"{OWNER}/{REPO}", number):
            phases = {p.name: p.status for p in await store.phases(task.id)}
            if phases.get("agent") is PhaseStatus.RUNNING:
                return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"no agent ran on #{number} in {seconds}s")


async def test_a_push_onto_the_branch_while_a_round_runs_is_refused_and_said(
    live: Gantry,
) -> None:
    number, branch, opened = await opened_pull(live)
    asked = await comment_on(live, number, "@gantry slowly say hello", pull=True)
    await until_agent_runs(live, number)
    theirs = await live.forge.commit_files(
        OWNER, REPO, branch, {"theirs.txt": "a person's change\n"}, message="A person's push"
    )
    tasks = await wait_final(live, 2)
    assert tasks[1].state is TaskState.FAILED
    # Nothing went on top of the person's commit: the checks never ran on the two together.
    assert await head_of(live, branch) == theirs
    [progress] = bot_comments(live, number)
    assert f"the branch `{branch}` moved while this round ran" in progress, progress
    assert f"from {opened[:7]}, where the round started, to {theirs[:7]}" in progress
    assert "nothing was pushed" in progress
    # The mention is shown, not sent (a word joiner after the `@`).
    assert "gantry retry` to run the round again on the new head" in progress
    assert [c for c, _ in live.forge.reactions(asked)][-1] == "confused"


async def test_a_round_retried_after_dying_between_its_push_and_its_record_pushes_once(
    live: Gantry, monkeypatch: pytest.MonkeyPatch
) -> None:
    number, branch, opened = await opened_pull(live)
    store = live.services.store
    record_pull = store.record_pull
    crashed: list[int] = []

    async def dies_once(task_id: int, pull_url: str) -> None:
        # The worker dies right after the push, before the store hears of it.
        if not crashed:
            crashed.append(task_id)
            raise RuntimeError("the worker died here")
        await record_pull(task_id, pull_url)

    # The store is the process's own; this is where its end is simulated.
    monkeypatch.setattr(store, "record_pull", dies_once)
    asked = await comment_on(live, number, "@gantry say hello", pull=True)
    [_, task] = await wait_final(live, 2)
    assert crashed == [task.id]
    pushed = await head_of(live, branch)
    assert await parent(live, pushed) == opened  # the first try pushed its commit

    # Taken back, as after a restart: the same task runs again.
    await store.set_state(task.id, TaskState.QUEUED)
    await live.services.queue.put(task.id)
    again = await until_ended(live, task.id)
    assert again.state is TaskState.SUCCEEDED, bot_comments(live, number)
    # Exactly one new commit on the branch: the first try's, recorded, not pushed again.
    log = await git_show(live.forge, "log", "--format=%H", "--stat", f"{opened}..{branch}")
    assert [line for line in log.splitlines() if len(line) == 40] == [pushed], log
    assert "🚀 Done" in bot_comments(live, number)[-1]
    assert [c for c, _ in live.forge.reactions(asked)][-1] == "rocket"
    kept = await store.task_branch(task.id)
    assert kept is not None
    assert (kept.branch, kept.commit_sha, kept.start_sha) == (branch, pushed, opened)
