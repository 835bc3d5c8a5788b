"""Subcommands, restarts, GitHub failures and installations, through the running intake."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.app import SERVICES, create_app
from bot.inbox import retry_delays
from bot.permissions import PermissionCache
from runner.store import InboxState, TaskState
from tests.bot.conftest import WRITER, Gantry

PERMISSION_ROUTE = "/repos/{owner}/{repo}/collaborators/{user}/permission"


async def comment(gantry: Gantry, body: str, *, sender: str = WRITER) -> tuple[int, Any]:
    """A real issue_comment delivery on the test issue, its comment present in the stand-in."""
    payload = gantry.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = gantry.forge.add_comment(
        "octo", "hello", gantry.issue_number, body, sender
    )
    delivery = gantry.delivery(
        "issue_comment", payload, sender=sender, body=body, number=gantry.issue_number
    )
    return await gantry.post(delivery)


def bot_replies(gantry: Gantry) -> list[str]:
    found = gantry.forge.comments("octo", "hello", gantry.issue_number)
    return [c["body"] for c in found if c["user"] == "gantry[bot]"]


async def test_help_and_an_empty_mention_get_the_help_text(gantry: Gantry) -> None:
    assert await comment(gantry, "@gantry help") == (200, {"outcome": "answered"})
    assert await comment(gantry, "@gantry") == (200, {"outcome": "answered"})
    await gantry.settle()
    replies = bot_replies(gantry)
    assert len(replies) == 2
    assert all("`@gantry exec <command>`" in reply for reply in replies)
    assert await gantry.tasks() == []


async def test_status_cancel_and_retry_act_on_the_store(gantry: Gantry) -> None:
    await comment(gantry, "@gantry status")
    assert (await comment(gantry, "@gantry write the changelog"))[1] == {"outcome": "queued"}
    [task] = await gantry.tasks()
    await comment(gantry, "@gantry status")
    await comment(gantry, "@gantry cancel")
    store = gantry.services.store
    cancelled = await store.get(task.id)
    assert cancelled is not None
    assert cancelled.state is TaskState.CANCELLED
    await comment(gantry, "@gantry retry")
    [retried] = await gantry.tasks()
    assert retried.id != task.id
    assert (retried.request, retried.kind) == ("write the changelog", "request")
    await gantry.settle()
    assert bot_replies(gantry) == [
        "There is no task on this thread yet.",
        f"Task #{task.id} (request, requested by @{WRITER}) is **queued**.",
        f"Cancelled task #{task.id}.",
        f"Queued task #{retried.id}, a retry of task #{task.id}.",
    ]


async def test_exec_is_stored_with_its_command(gantry: Gantry) -> None:
    await comment(gantry, "@gantry exec make format")
    [task] = await gantry.tasks()
    assert (task.kind, task.request) == ("exec", "make format")


async def test_a_restart_keeps_queued_tasks(gantry: Gantry) -> None:
    await comment(gantry, "@gantry first")
    await comment(gantry, "@gantry second")
    queued = [t.id for t in await gantry.tasks()]
    assert len(queued) == 2
    await gantry.server.close()
    restarted = TestServer(create_app(gantry.settings, workers=False))
    await restarted.start_server()
    try:
        services = restarted.app[SERVICES]
        assert [await services.queue.get() for _ in queued] == queued
        assert services.queue.qsize() == 0
    finally:
        await restarted.close()


async def test_a_redelivery_after_a_restart_is_still_a_duplicate(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    delivery = gantry.delivery("issue_comment", payload, body="@gantry fix it", number=1)
    assert (await gantry.post(delivery))[1] == {"outcome": "queued"}
    await gantry.server.close()
    gantry.server = TestServer(create_app(gantry.settings, workers=False))
    await gantry.server.start_server()
    assert (await gantry.post(delivery))[1] == {"outcome": "duplicate"}
    assert len(await gantry.tasks()) == 1


async def test_a_mention_while_github_fails_becomes_one_task_once_it_recovers(
    gantry: Gantry,
) -> None:
    gantry.services.inbox.delays = [0.2] * 100  # GitHub fails for 6 s: past its client retries
    gantry.forge.inject_fault("GET", PERMISSION_ROUTE, "error", count=None, status=502)
    asyncio.get_running_loop().call_later(6, gantry.forge.clear_faults)
    payload = gantry.examples("issue_comment")[0]
    delivery = gantry.delivery("issue_comment", payload, body="@gantry fix it", number=1)
    assert await gantry.answer(delivery) == (200, {"outcome": "accepted"})
    delivery_id = delivery.headers["X-GitHub-Delivery"]
    assert await gantry.outcome(delivery_id) == "queued"
    entry = await gantry.services.store.inbox_entry(delivery_id)
    assert entry is not None
    assert entry.state is InboxState.DONE
    assert entry.attempts > 1
    assert len(await gantry.tasks()) == 1
    assert await gantry.post(delivery) == (200, {"outcome": "duplicate"})
    assert len(await gantry.tasks()) == 1


async def test_a_delivery_still_failing_after_its_retries_is_kept_with_its_reason(
    gantry: Gantry,
) -> None:
    gantry.forge.inject_fault("GET", PERMISSION_ROUTE, "error", count=None, status=502)
    status, answer = await comment(gantry, "@gantry fix it")
    assert (status, answer) == (200, {"outcome": "failed"})
    [entry] = await gantry.services.store.inbox(InboxState.FAILED)
    settings = gantry.settings
    retries = len(retry_delays(settings.inbox_retry_first, settings.inbox_retry_limit))
    assert entry.attempts == retries + 1
    assert entry.reason.startswith("GitHub failed: GitHubBroken")
    assert await gantry.tasks() == []


async def test_a_secondary_rate_limit_is_waited_out(gantry: Gantry) -> None:
    gantry.forge.inject_fault("GET", PERMISSION_ROUTE, "secondary_rate_limit", retry_after=0)
    status, _ = await comment(gantry, "@gantry fix it")
    assert status == 200
    statuses = [r.status for r in gantry.forge.requests if r.path.endswith("/permission")]
    assert statuses == [403, 200]


async def test_permissions_are_cached_briefly(gantry: Gantry) -> None:
    for n in range(3):
        await comment(gantry, f"@gantry task {n}")
    lookups = [r for r in gantry.forge.requests if r.path.endswith("/permission")]
    assert len(lookups) == 1
    assert len(await gantry.tasks()) == 3


async def test_the_trigger_label_and_an_assignment_start_tasks(gantry: Gantry) -> None:
    labeled = next(p for p in gantry.examples("issues") if p["action"] == "labeled")
    labeled["label"]["name"] = "gantry"
    assigned = next(p for p in gantry.examples("issues") if p["action"] == "assigned")
    assigned["assignee"]["login"] = "gantry[bot]"
    other = next(p for p in gantry.examples("issues") if p["action"] == "labeled")
    other["label"]["name"] = "bug"
    for payload, outcome in ((labeled, "queued"), (assigned, "queued"), (other, "ignored")):
        delivery = gantry.delivery("issues", payload, number=gantry.issue_number)
        assert (await gantry.post(delivery))[1] == {"outcome": outcome}
    tasks = await gantry.tasks()
    assert [t.comment_kind for t in tasks] == ["issue", "issue"]
    assert tasks[0].request.startswith(labeled["issue"]["title"])
    await gantry.settle()
    issue = gantry.forge.state.issue(gantry.forge.repo("octo", "hello"), gantry.issue_number)
    assert issue is not None
    assert gantry.forge.reactions(issue.id) == [("eyes", "gantry[bot]")]


async def test_installations_are_remembered_and_forgotten(gantry: Gantry) -> None:
    created = next(p for p in gantry.examples("installation") if p["action"] == "created")
    created["repositories"] = [{"full_name": "octo/hello"}, {"full_name": "octo/other"}]
    assert (await gantry.post(gantry.delivery("installation", created)))[0] == 200
    store = gantry.services.store
    assert await store.installation_repos(gantry.installation_id) == ["octo/hello", "octo/other"]
    removed = gantry.examples("installation_repositories")[0]
    removed.update(
        action="removed", repositories_added=[], repositories_removed=[{"full_name": "octo/other"}]
    )
    await gantry.post(gantry.delivery("installation_repositories", removed))
    assert await store.installation_repos(gantry.installation_id) == ["octo/hello"]
    deleted = next(p for p in gantry.examples("installation") if p["action"] == "deleted")
    await gantry.post(gantry.delivery("installation", deleted))
    assert await store.installation_repos(gantry.installation_id) == []


async def test_health_and_readiness(gantry: Gantry) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gantry.server.make_url("/healthz")) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with session.get(gantry.server.make_url("/readyz")) as response:
            body = await response.json()
    # Ready needs the Docker engine too; without one it says so instead of lying.
    if body["status"] == "ready":
        assert response.status == 200
    else:
        assert response.status == 503
        assert set(body["problems"]) == {"docker"}


async def test_the_default_branchs_triggers_decide(gantry: Gantry) -> None:
    config = "triggers:\n  min_permission: admin\n  label: agent\n  assign: false\n"
    await gantry.forge.commit_files("octo", "hello", "main", {".github/gantry.yml": config})
    assert (await comment(gantry, "@gantry fix it"))[1] == {"outcome": "refused"}
    issues = gantry.examples("issues")
    labeled = next(p for p in issues if p["action"] == "labeled")
    labeled["label"]["name"] = "agent"
    assigned = next(p for p in issues if p["action"] == "assigned")
    assigned["assignee"]["login"] = "gantry[bot]"
    gantry.forge.set_permission("octo", "hello", WRITER, "admin")
    gantry.services.intake.permissions = PermissionCache()
    for payload, outcome in ((labeled, "queued"), (assigned, "ignored")):
        delivery = gantry.delivery("issues", payload, number=gantry.issue_number)
        assert (await gantry.post(delivery))[1] == {"outcome": outcome}
    await gantry.settle()
    assert "only people with admin access" in bot_replies(gantry)[0]


async def test_a_pr_cannot_change_who_may_trigger(gantry: Gantry) -> None:
    relaxed = "triggers:\n  min_permission: read\n"
    await gantry.forge.commit_files("octo", "hello", "feature", {".github/gantry.yml": relaxed})
    status, answer = await comment(gantry, "@gantry fix it", sender="rita")
    assert (status, answer) == (200, {"outcome": "refused"})
