"""End to end: check results as they are, on the commit Gantry pushed, round after round."""

from __future__ import annotations

from typing import Any

from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, set_config, wait_final
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
    """The check runs on a branch's head (the commit Gantry pushed last)."""
    head = (await live.forge.branches(OWNER, REPO))[branch]
    return [r for r in live.forge.check_runs(OWNER, REPO) if r["head_sha"] == head]


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
