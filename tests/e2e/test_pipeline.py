"""End to end: a signed comment becomes a PR, through the stand-in and the real engine."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import urljoin

import aiohttp

from bot.task_page import signature, signed_url
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, SECRET, Gantry
from tests.e2e.conftest import comment_on, git_show, live_containers, wait_final


async def test_a_comment_becomes_a_pull_request_and_a_follow_up_a_second_commit(
    live: Gantry,
) -> None:
    asked = await comment_on(live, live.issue_number, "@gantry fix the flaky date test")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, live.forge.comments(OWNER, REPO, live.issue_number)
    assert live.forge.reactions(asked) == [("eyes", "gantry[bot]"), ("rocket", "gantry[bot]")]
    [pull] = live.forge.pulls(OWNER, REPO)
    assert pull.head == f"gantry/{live.issue_number}-fix-the-flaky-date-test"
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    assert await git_show(live.forge, "show", f"{head}:fix.txt") == (
        "fixed: fix the flaky date test\n"
    )
    names = await git_show(live.forge, "show", "--name-status", "--format=%an%n%B", head)
    assert names.startswith("gantry[bot]\nfix the flaky date test\n")
    alice = live.forge.state.users["alice"].id
    assert f"Co-authored-by: alice <{alice}+alice@users.noreply.github.com>" in names
    assert "A\tfix.txt" in names
    task_json = json.loads(await git_show(live.forge, "show", f"{head}:task.json"))
    assert task_json["body"] == "It fails at midnight."
    assert task_json["request"] == "fix the flaky date test"
    assert (task_json["requester"], task_json["rounds"]) == ("alice", [])
    assert "D\told.txt" in names
    body = pull.issue.body or ""
    assert "| ✅ | `test -f fix.txt` | AGENTS.md:6 | 0 |" in body
    assert body.endswith(f"Closes #{live.issue_number}")
    assert pull.issue.labels == ["gantry"]
    assert not pull.draft
    comments = live.forge.comments(OWNER, REPO, live.issue_number)
    progress = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
    assert len(progress) == 1
    assert "🚀 Done:" in progress[0]
    assert "- ✅ checks" in progress[0]

    await comment_on(live, pull.issue.number, "@gantry also say hello", pull=True)
    tasks = await wait_final(live, 2)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED], (
        live.forge.comments(OWNER, REPO, pull.issue.number)
    )
    assert len(live.forge.pulls(OWNER, REPO)) == 1
    second = (await live.forge.branches(OWNER, REPO))[pull.head]
    assert await git_show(live.forge, "rev-parse", f"{second}^") == f"{head}\n"
    assert await git_show(live.forge, "show", f"{second}:fix.txt") == "fixed: also say hello\n"
    assert live_containers(live) == []


async def test_the_task_page_shows_phases_log_and_diff_behind_its_signed_link(
    live: Gantry,
) -> None:
    await comment_on(live, live.issue_number, "@gantry fix the flaky date test")
    [task] = await wait_final(live, 1)
    link = signed_url("https://gantry.example", SECRET, task.id)
    [pull] = live.forge.pulls(OWNER, REPO)
    assert f"[Task log]({link})" in (pull.issue.body or "")
    [progress] = [
        c["body"]
        for c in live.forge.comments(OWNER, REPO, live.issue_number)
        if c["user"] == "gantry[bot]"
    ]
    # Next to the task's own link: its repository's task list, for whoever holds the link.
    found = re.search(
        rf"\[Task log\]\({re.escape(link)}\) · \[All tasks in this repository\]\(([^)]+)\)",
        progress,
    )
    assert found is not None, progress
    listed = found[1].removeprefix("https://gantry.example")
    assert listed.startswith(f"/repos/{OWNER}/{REPO}/tasks?sig=")
    path = link.removeprefix("https://gantry.example")
    async with aiohttp.ClientSession() as session:
        async with session.get(live.server.make_url(path)) as response:
            assert response.status == 200
            page = await response.text()
        forged = path.replace("sig=", "sig=0")
        async with session.get(live.server.make_url(forged[:-1])) as response:
            assert response.status == 404
        unsigned, _, sig = listed.partition("?sig=")
        tampered = f"{unsigned}?sig={sig[:-1]}{'0' if sig[-1] != '0' else '1'}"
        for refused in (unsigned, tampered, f"/repos/{OWNER}/second/tasks?sig={sig}"):
            async with session.get(live.server.make_url(refused)) as response:
                assert response.status == 404, refused
        # The list, reached from the comment's link and from the task page's own.
        on_page = re.search(r'<a href="(\.\./repos/[^"]+)">All tasks in ', page)
        assert on_page is not None
        from_page = urljoin(path, html.unescape(on_page[1]))
        for url in (listed, from_page):
            async with session.get(live.server.make_url(url)) as response:
                assert response.status == 200, url
                tasks = await response.text()
            assert f"href='../../../tasks/{task.id}?sig={signature(SECRET, task.id)}'" in tasks
    for phase in ("prepare", "environment", "agent", "checks", "collect", "publish"):
        assert f"<td>{phase}</td><td>done</td>" in page
    assert "+fixed: fix the flaky date test" in page
    assert "[checks] [gantry] checks done in" in page  # the log, phase by phase
