"""End to end: no changes, failing checks, a person's PR, cancel, hostile text, refusals."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import docker

from forge.state import PullFields
from runner.labels import deployment_owner
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import (
    comment_on,
    config_with,
    git_show,
    live_containers,
    set_config,
    wait_final,
)


def bot_comments(live: Gantry, number: int) -> list[str]:
    return [
        c["body"] for c in live.forge.comments(OWNER, REPO, number) if c["user"] == "gantry[bot]"
    ]


async def test_no_changes_means_no_pull_request(live: Gantry) -> None:
    await set_config(live, config_with("true"))
    await comment_on(live, live.issue_number, "@gantry look around")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    assert live.forge.pulls(OWNER, REPO) == []
    [progress] = bot_comments(live, live.issue_number)
    assert "changed nothing, so there is no pull request" in progress


async def test_failing_checks_still_publish_as_a_draft_with_the_tail(live: Gantry) -> None:
    agent = "echo change > change.txt"
    checks = "checks:\n  - echo 'expected 3, got 4' && exit 3\n  - 'true'\n"
    await set_config(live, config_with(agent, checks))
    await comment_on(live, live.issue_number, "@gantry make a change")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    [pull] = live.forge.pulls(OWNER, REPO)
    assert pull.draft
    body = pull.issue.body or ""
    assert "| ❌ | `echo 'expected 3, got 4' && exit 3` | .github/gantry.yml:" in body
    assert "| 3 |" in body
    assert "expected 3, got 4" in body
    assert "| ✅ | `true` |" in body


async def test_a_persons_pull_request_gets_a_stacked_one(live: Gantry) -> None:
    await set_config(live, config_with("echo more >> feature.txt"))
    await live.forge.commit_files(OWNER, REPO, "feature", {"feature.txt": "theirs\n"})
    theirs = live.forge.state.add_pull(
        live.forge.repo(OWNER, REPO),
        PullFields(title="Their feature", head="feature", base="main", body="", draft=False),
        live.forge.state.user("alice"),
    )
    before = (await live.forge.branches(OWNER, REPO))["feature"]
    await comment_on(live, theirs.issue.number, "@gantry add a line", pull=True)
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, theirs.issue.number)
    pulls = live.forge.pulls(OWNER, REPO)
    assert len(pulls) == 2
    stacked = pulls[1]
    assert stacked.base == "feature"
    assert stacked.head.startswith(f"gantry/{theirs.issue.number}-")
    branches = await live.forge.branches(OWNER, REPO)
    assert branches["feature"] == before  # their branch is untouched
    assert await git_show(live.forge, "rev-parse", f"{branches[stacked.head]}^") == f"{before}\n"


async def test_cancel_during_the_agent_stops_it_within_seconds(live: Gantry) -> None:
    await set_config(live, config_with("sleep 600"))
    await comment_on(live, live.issue_number, "@gantry take forever")
    store = live.services.store
    for _ in range(300):
        if live_containers(live) and (await store.with_state(TaskState.RUNNING)):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # into the agent phase
    started = asyncio.get_running_loop().time()
    status, answer = await live.post(
        live.delivery(
            "issue_comment",
            cancel_payload(live),
            body="@gantry cancel",
            number=live.issue_number,
        )
    )
    assert (status, answer) == (200, {"outcome": "answered"})
    workers = live.services.workers
    assert workers is not None
    await asyncio.wait_for(workers.worker.settle(), 30)
    assert asyncio.get_running_loop().time() - started < 15
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.CANCELLED
    await live.settle()
    assert live_containers(live) == []
    # The reply to the cancel says the task is stopping; its progress comment, how it ended.
    said = bot_comments(live, live.issue_number)
    assert any(text.startswith(f"Stopping task #{task.id}.") for text in said), said
    assert any(f"task #{task.id}**" in text and "Cancelled." in text for text in said), said
    assert live.forge.pulls(OWNER, REPO) == []


def cancel_payload(live: Gantry) -> dict[str, object]:
    payload = live.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = live.forge.add_comment(
        OWNER, REPO, live.issue_number, "@gantry cancel", "alice"
    )
    return payload


async def test_hostile_text_is_carried_as_data(live: Gantry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f'$(touch {marker}) `touch {marker}` zzz";echo${{IFS}}x;# -rf\n--amend'
    await set_config(
        live, config_with(f'printf "%s" "$GANTRY_PROMPT" > prompt.txt\ntest ! -e {marker}')
    )
    record = live.forge.state.issue(live.forge.repo(OWNER, REPO), live.issue_number)
    assert record is not None
    record.title = hostile
    await comment_on(live, live.issue_number, f"@gantry {hostile}")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, live.issue_number)
    assert not marker.exists()
    [pull] = live.forge.pulls(OWNER, REPO)
    assert pull.head.startswith(f"gantry/{live.issue_number}-touch-")
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    assert await git_show(live.forge, "show", f"{head}:prompt.txt") == hostile


async def test_a_workflow_change_is_refused_and_explained(live: Gantry) -> None:
    agent = "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml"
    await set_config(live, config_with(agent))
    await comment_on(live, live.issue_number, "@gantry add CI")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.FAILED
    [progress] = bot_comments(live, live.issue_number)
    assert "Failed in the **collect** phase" in progress
    assert "workflows permission" in progress
    assert live.forge.pulls(OWNER, REPO) == []


async def test_the_config_may_allow_pushing_to_a_persons_pull_request(live: Gantry) -> None:
    extra = "pull_request: {push_to_pull_requests: true}\n"
    await set_config(live, config_with("echo more >> feature.txt", extra))
    before = await live.forge.commit_files(OWNER, REPO, "feature", {"feature.txt": "theirs\n"})
    theirs = live.forge.state.add_pull(
        live.forge.repo(OWNER, REPO),
        PullFields(title="Their feature", head="feature", base="main", body="", draft=False),
        live.forge.state.user("alice"),
    )
    await comment_on(live, theirs.issue.number, "@gantry add a line", pull=True)
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, bot_comments(live, theirs.issue.number)
    assert len(live.forge.pulls(OWNER, REPO)) == 1
    after = (await live.forge.branches(OWNER, REPO))["feature"]
    assert await git_show(live.forge, "rev-parse", f"{after}^") == f"{before}\n"


async def test_reset_cache_drops_the_repositorys_environments(live: Gantry) -> None:
    await set_config(live, config_with("echo hi > hi.txt", "setup: echo setting up\n"))
    await comment_on(live, live.issue_number, "@gantry build the cache")
    await wait_final(live, 1)
    assert cache_images(live) != []
    payload = live.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = live.forge.add_comment(
        OWNER, REPO, live.issue_number, "@gantry reset-cache", "alice"
    )
    delivery = live.delivery(
        "issue_comment", payload, body="@gantry reset-cache", number=live.issue_number
    )
    assert await live.post(delivery) == (200, {"outcome": "answered"})
    await live.settle()
    assert cache_images(live) == []
    assert any(
        re.match(r"Dropped 1 cached environment\(s\) of octo/hello", text)
        for text in bot_comments(live, live.issue_number)
    )


def cache_images(live: Gantry) -> list[str]:
    """This deployment's cache images of the test repository (others on the engine keep theirs)."""
    owner = deployment_owner(live.settings.effective_database_url)
    client = docker.from_env()
    try:
        labels = ["gantry.managed=1", "gantry.kind=cache", f"gantry.repo={OWNER}/{REPO}"]
        labels.append(f"gantry.owner={owner}")
        return [str(i.id) for i in client.images.list(filters={"label": labels})]
    finally:
        client.close()
