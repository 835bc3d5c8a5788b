"""End to end: check results as they are, on the commit Gantry pushed, round after round."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from forge.state import AfterCreate
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, git_show, set_config, wait_final
from tests.support import TEST_BASE_IMAGE

FAILING = "checks:\n  - echo 'expected 3, got 4' && exit 3\n  - 'true'\n"
# A follow-up whose agent tries a host the policy does not list, then passes its one check.
FOLLOW_UP = f"""\
image: {TEST_BASE_IMAGE}
agent:
  command: |
    echo more >> change.txt
    python3 -c "import urllib.request as u; u.urlopen('http://denied.test/x', timeout=5)" || true
network: {{setup: off, agent: limited, allow: [allowed.test]}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
checks: ['true']
"""


def bot_comments(live: Gantry, number: int) -> list[str]:
    return [
        c["body"] for c in live.forge.comments(OWNER, REPO, number) if c["user"] == "gantry[bot]"
    ]


async def runs_on(live: Gantry, branch: str) -> list[dict[str, Any]]:
    """The check runs on a branch's head, which must be a commit Gantry pushed (its author
    as the stand-in's repository has it)."""
    head = (await live.forge.branches(OWNER, REPO))[branch]
    assert await git_show(live.forge, "log", "-1", "--format=%an", head) == "gantry[bot]\n"
    return [r for r in live.forge.check_runs(OWNER, REPO) if r["head_sha"] == head]


def runs_by_sha(live: Gantry) -> dict[str, list[str | None]]:
    """Each commit's check runs, by conclusion."""
    found: dict[str, list[str | None]] = {}
    for run in live.forge.check_runs(OWNER, REPO):
        found.setdefault(run["head_sha"], []).append(run["conclusion"])
    return found


async def test_failing_then_passing_rounds_are_reported_as_they_are(live: Gantry) -> None:
    await set_config(live, config_with("echo change > change.txt", FAILING))
    await comment_on(live, live.issue_number, "@gantry make a change")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, live.issue_number)
    [pull] = live.forge.pulls(OWNER, REPO)
    assert pull.draft
    [progress] = bot_comments(live, live.issue_number)
    assert "❌ checks" in progress
    assert ": 1 of 2 failed" in progress
    assert "✅ checks" not in progress
    assert "🚀 Done:" in progress
    [run] = await runs_on(live, pull.head)  # a PR opened from an issue has its run
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert runs_by_sha(live) == {run["head_sha"]: ["failure"]}
    assert "expected 3, got 4" in run["output"]["summary"]
    first = run["head_sha"]

    await set_config(live, FOLLOW_UP)
    await comment_on(live, pull.issue.number, "@gantry add more", pull=True)
    tasks = await wait_final(live, 2)
    assert tasks[1].state is TaskState.SUCCEEDED, bot_comments(live, pull.issue.number)
    [round_two] = bot_comments(live, pull.issue.number)
    assert "✅ checks" in round_two
    assert "### Checks" in round_two
    assert "| ✅ | `true` |" in round_two
    assert "### Blocked network attempts" in round_two
    assert "denied.test" in round_two.split("### Blocked network attempts")[1]
    [run] = await runs_on(live, pull.head)
    assert run["head_sha"] != first
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert "denied.test" in run["output"]["summary"]
    earlier = [r for r in live.forge.check_runs(OWNER, REPO) if r["head_sha"] == first]
    # The first round's verdict on its commit stays; the second round's run from there
    # points on to the commit it pushed.
    assert sorted(r["conclusion"] for r in earlier) == ["failure", "neutral"]
    assert all(r["status"] == "completed" for r in live.forge.check_runs(OWNER, REPO))


async def test_no_checks_are_neutral(live: Gantry) -> None:
    await set_config(live, config_with("echo change > change.txt"))
    await live.forge.commit_files(OWNER, REPO, "main", {"AGENTS.md": None})
    await comment_on(live, live.issue_number, "@gantry make a change")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, live.issue_number)
    [pull] = live.forge.pulls(OWNER, REPO)
    assert not pull.draft
    [progress] = bot_comments(live, live.issue_number)
    assert ": none configured" in progress
    [run] = await runs_on(live, pull.head)
    assert (run["conclusion"], run["output"]["title"]) == ("neutral", "No checks")


async def test_a_commit_pushed_by_someone_else_right_after_gantry_gets_no_run(
    live: Gantry,
) -> None:
    """Someone pushes onto the task's branch between Gantry's push and its report: the run
    stays on the commit Gantry pushed, and the newcomer's commit is judged by nobody."""
    await set_config(live, config_with("echo change > change.txt", FAILING))
    # GitHub opens the PR, then takes its time to say so: room for the other push.
    live.forge.state.after_create_pull.append(AfterCreate(delay=4.0))
    await comment_on(live, live.issue_number, "@gantry make a change")
    deadline = time.monotonic() + 180
    while not live.forge.pulls(OWNER, REPO):
        assert time.monotonic() < deadline, "no pull request"
        await asyncio.sleep(0.05)
    [pull] = live.forge.pulls(OWNER, REPO)
    [task] = await live.services.store.with_state(TaskState.RUNNING)
    ours = (await live.forge.branches(OWNER, REPO))[pull.head]  # the branch as Gantry left it
    assert await git_show(live.forge, "log", "-1", "--format=%an", ours) == "gantry[bot]\n"
    theirs = await live.forge.commit_files(
        OWNER, REPO, pull.head, {"theirs.txt": "mine\n"}, message="Someone else's commit"
    )
    [done] = await wait_final(live, 1)
    assert (done.id, done.state) == (task.id, TaskState.SUCCEEDED), bot_comments(
        live, live.issue_number
    )
    assert (await live.forge.branches(OWNER, REPO))[pull.head] == theirs
    assert runs_by_sha(live) == {ours: ["failure"]}
