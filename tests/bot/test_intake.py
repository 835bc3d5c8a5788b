"""Subcommands, restarts, GitHub failures and installations, through the running intake."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import SERVICES
from bot.inbox import retry_delays
from bot.permissions import PermissionCache
from bot.replies import already_ended, cache_reset_requested, refusal
from bot.repo_files import default_branch_checkout
from config.repo_config import ConfigError
from config.settings import Settings
from forge.sender import Delivery
from gantry.compose import create_app
from runner.cache_resets import RESET_POLL_S
from runner.store import InboxState, TaskStore
from runner.task import Task, TaskState
from tests.bot.conftest import READER, WRITER, Gantry
from tests.support import slowest_answer

PERMISSION_ROUTE = "/repos/{owner}/{repo}/collaborators/{user}/permission"
COMMENTS_ROUTE = "/repos/{owner}/{repo}/issues/{number}/comments"
REACTIONS_ROUTE = "/repos/{owner}/{repo}/issues/comments/{id}/reactions"
# Every lookup and write handling a mention makes: the installation token, the permission,
# the config's contents, the reaction and replies.
EVERYTHING = [("POST", "/app/installations/*"), ("GET", "/repos/*"), ("POST", "/repos/*")]


async def comment(gantry: Gantry, body: str, *, sender: str = WRITER) -> tuple[int, Any]:
    """A real issue_comment delivery on the test issue, its comment present in the stand-in."""
    return await gantry.post(mention(gantry, body, sender=sender)[0])


def mention(gantry: Gantry, body: str, *, sender: str = WRITER) -> tuple[Delivery, int]:
    """A comment on the test issue, made in the stand-in, and its signed delivery."""
    payload = gantry.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    comment_id = gantry.forge.add_comment("octo", "hello", gantry.issue_number, body, sender)
    payload["comment"]["id"] = comment_id
    delivery = gantry.delivery(
        "issue_comment", payload, sender=sender, body=body, number=gantry.issue_number
    )
    return delivery, comment_id


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


class EndsAfterRead:
    """The store, with a worker ending a task (its run done) right after the intake reads the
    thread's latest task: between `@gantry cancel`'s read and its write."""

    def __init__(self, inner: TaskStore, task_id: int, owner: str) -> None:
        self.inner, self.task_id, self.owner = inner, task_id, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def latest_for_thread(self, repo: str, number: int) -> Task | None:
        latest = await self.inner.latest_for_thread(repo, number)
        assert await self.inner.finish_task(self.task_id, self.owner, TaskState.SUCCEEDED)
        return latest


async def test_a_cancel_after_the_task_ended_keeps_its_end_and_says_so(gantry: Gantry) -> None:
    await comment(gantry, "@gantry write the changelog")
    store = gantry.services.store
    task = await store.claim_next("w", 60)  # a worker runs it
    assert task is not None
    gantry.services.intake.store = EndsAfterRead(store, task.id, "w")
    assert await comment(gantry, "@gantry cancel") == (200, {"outcome": "answered"})
    await gantry.settle()
    ended = await store.get(task.id)
    assert ended is not None
    assert ended.state is TaskState.SUCCEEDED
    assert bot_replies(gantry) == [already_ended(ended)]
    assert "had already finished" in already_ended(ended)


async def test_a_cancel_of_a_running_task_that_then_publishes_never_said_cancelled(
    gantry: Gantry,
) -> None:
    """The cancel is written while a worker (in another process) runs the task, which ends
    published before its heartbeat hears of the cancel: the reply did not say "Cancelled"."""
    await comment(gantry, "@gantry write the changelog")
    store = gantry.services.store
    task = await store.claim_next("w", 60)  # a worker runs it
    assert task is not None
    assert await comment(gantry, "@gantry cancel") == (200, {"outcome": "answered"})
    # The worker's run had published: its end is what the store keeps.
    assert await store.finish_task(task.id, "w", TaskState.SUCCEEDED)
    await gantry.settle()
    ended = await store.get(task.id)
    assert ended is not None
    assert ended.state is TaskState.SUCCEEDED
    [reply] = bot_replies(gantry)
    assert "Cancelled" not in reply, reply
    assert reply.startswith(f"Stopping task #{task.id}. Its progress comment says how it ends")


async def test_reset_cache_without_workers_asks_every_worker_through_the_store(
    gantry: Gantry,
) -> None:
    assert await comment(gantry, "@gantry reset-cache") == (200, {"outcome": "answered"})
    await gantry.settle()
    assert bot_replies(gantry) == [cache_reset_requested("octo/hello", RESET_POLL_S)]
    store = gantry.services.store
    assert await store.cache_resets_after(0) == [(1, "octo/hello")]


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
        assert [t.id for t in await services.store.with_state(TaskState.QUEUED)] == queued
        assert (await services.store.state_counts())[0] == {"queued": 2}
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


async def test_30_s_of_github_failing_everywhere_ends_in_one_task_and_one_reaction(
    gantry: Gantry,
) -> None:
    """The issue's Must show, with the default retry schedule (this takes about a minute)."""
    defaults = Settings.model_fields
    first, limit = defaults["inbox_retry_first"].default, defaults["inbox_retry_limit"].default
    gantry.services.inbox.delays = retry_delays(first, limit)
    for method, route in EVERYTHING:
        gantry.forge.inject_fault(method, route, "error", count=None, status=502)
    asyncio.get_running_loop().call_later(30, gantry.forge.clear_faults)
    delivery, comment_id = mention(gantry, "@gantry fix the midnight test")
    assert await gantry.answer(delivery) == (200, {"outcome": "accepted"})
    delivery_id = delivery.headers["X-GitHub-Delivery"]
    assert await gantry.outcome(delivery_id) == "queued"
    entry = await gantry.services.store.inbox_entry(delivery_id)
    assert entry is not None
    assert (entry.state, entry.reason) == (InboxState.DONE, "")
    assert any(r.status == 502 for r in gantry.forge.requests)  # GitHub did fail meanwhile
    [task] = await gantry.tasks()
    assert task.request == "fix the midnight test"
    assert gantry.forge.reactions(comment_id) == [("eyes", "gantry[bot]")]


async def test_a_reply_whose_post_fails_for_a_while_appears_once_after(gantry: Gantry) -> None:
    gantry.services.inbox.delays = [0.2] * 100
    gantry.forge.inject_fault("POST", COMMENTS_ROUTE, "error", count=None, status=502)
    asyncio.get_running_loop().call_later(3, gantry.forge.clear_faults)
    delivery, _ = mention(gantry, "@gantry help")
    assert await gantry.post(delivery) == (200, {"outcome": "answered"})
    [reply] = bot_replies(gantry)
    assert "`@gantry exec <command>`" in reply
    failed = [r for r in gantry.forge.requests if r.method == "POST" and r.status == 502]
    assert failed  # the reply's POST did fail first


@pytest.mark.parametrize("slow", ["![" * 32_000, "<!--" * 16_000, "<script>" * 8_000])
async def test_mentions_full_of_slow_markdown_leave_the_server_answering(
    gantry: Gantry, slow: str
) -> None:
    # From a reader (anyone can comment on a public repository): 64 KiB of `![` took about
    # 1.5 s of markdown-it each, on the event loop, before the permission was looked up;
    # 64 KiB of unclosed `<!--` took 13 s of the hidden-text filter.
    hostile = "@gantry fix it " + slow
    stop = threading.Event()
    health = str(gantry.server.make_url("/healthz"))
    poll = asyncio.ensure_future(asyncio.to_thread(slowest_answer, health, stop))
    try:
        sent = [mention(gantry, hostile, sender=READER)[0] for _ in range(4)]
        answers = await asyncio.gather(*(gantry.post(delivery) for delivery in sent))
    finally:
        stop.set()
    assert await poll < 1.0
    assert answers == [(200, {"outcome": "refused"})] * 4
    assert await gantry.tasks() == []


async def test_a_refusal_whose_post_fails_for_a_while_appears_once_after(gantry: Gantry) -> None:
    gantry.services.inbox.delays = [0.2] * 100
    gantry.forge.inject_fault("POST", COMMENTS_ROUTE, "error", count=None, status=503)
    asyncio.get_running_loop().call_later(3, gantry.forge.clear_faults)
    delivery, _ = mention(gantry, "@gantry fix it", sender=READER)
    assert await gantry.post(delivery) == (200, {"outcome": "refused"})
    assert bot_replies(gantry) == [refusal(READER, "write")]
    assert await gantry.tasks() == []


async def test_a_reply_written_but_answered_502_is_not_posted_again(gantry: Gantry) -> None:
    gantry.forge.inject_fault("POST", COMMENTS_ROUTE, "error_after_write", count=1, status=502)
    delivery, _ = mention(gantry, "@gantry status")
    assert await gantry.post(delivery) == (200, {"outcome": "answered"})
    assert bot_replies(gantry) == ["There is no task on this thread yet."]
    entry = await gantry.services.store.inbox_entry(delivery.headers["X-GitHub-Delivery"])
    assert entry is not None
    assert (entry.state, entry.attempts) == (InboxState.DONE, 2)


async def test_a_retry_whose_reaction_fails_a_while_makes_one_task_and_names_the_one_before(
    gantry: Gantry,
) -> None:
    await comment(gantry, "@gantry write the changelog")
    [first] = await gantry.tasks()
    gantry.services.inbox.delays = [0.2] * 100
    gantry.forge.inject_fault("POST", REACTIONS_ROUTE, "error", count=None, status=502)
    asyncio.get_running_loop().call_later(3, gantry.forge.clear_faults)
    delivery, comment_id = mention(gantry, "@gantry retry")
    assert await gantry.post(delivery) == (200, {"outcome": "answered"})
    [_, retried] = await gantry.tasks()
    assert bot_replies(gantry) == [f"Queued task #{retried.id}, a retry of task #{first.id}."]
    assert gantry.forge.reactions(comment_id) == [("eyes", "gantry[bot]")]


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


async def test_a_failed_delivery_redelivered_once_github_is_back_becomes_one_task(
    gantry: Gantry,
) -> None:
    # What the docs and doctor tell the operator to do with a failed delivery.
    gantry.forge.inject_fault("GET", PERMISSION_ROUTE, "error", count=None, status=502)
    delivery, _ = mention(gantry, "@gantry fix it")
    assert await gantry.post(delivery) == (200, {"outcome": "failed"})
    gantry.forge.clear_faults()
    assert await gantry.post(delivery) == (200, {"outcome": "queued"})
    assert len(await gantry.tasks()) == 1
    assert await gantry.services.store.inbox(InboxState.FAILED) == []
    # Handled now: a third copy is a duplicate again, and makes nothing.
    assert await gantry.post(delivery) == (200, {"outcome": "duplicate"})
    assert len(await gantry.tasks()) == 1


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
    assert (response.status, body) == (200, {"status": "ready"})


async def test_readiness_asks_for_the_engine_only_where_workers_run(
    gantry: Gantry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine answers
    with_workers = gantry.settings.model_copy(
        update={"executor": "local", "data_dir": tmp_path / "with-workers"}
    )
    server = TestServer(create_app(with_workers, workers=True))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(gantry.server.make_url("/readyz")) as response:
                # `--no-workers` runs no container: the store is all it needs.
                assert (response.status, await response.json()) == (200, {"status": "ready"})
            async with session.get(server.make_url("/readyz")) as response:
                body = await response.json()
        assert (response.status, body["status"], set(body["problems"])) == (
            503, "not ready", {"docker"}
        )  # fmt: skip
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("env:\n  X: " + "9" * 5000 + "\n", "env.X: a number longer than 100 characters"),
        ("timeouts:\n  setup: 99999999999999999999h\n", "timeouts.setup: must be at most"),
    ],
    ids=["huge-int", "huge-duration"],
)
async def test_a_config_too_large_to_read_is_broken_not_a_dropped_mention(
    gantry: Gantry, config: str, problem: str
) -> None:
    """Such a file once crashed the config read: no 👀, no reply, no task. Now it is a broken
    config like any other: default triggers decide, and the task reports the line."""
    await gantry.forge.commit_files("octo", "hello", "main", {".github/gantry.yml": config})
    assert await comment(gantry, "@gantry fix it") == (200, {"outcome": "queued"})
    await gantry.settle()
    [task] = await gantry.tasks()
    gh = gantry.services.intake.github(gantry.installation_id)
    checkout = await default_branch_checkout(gh, task.repo, task.default_branch, gantry.settings)
    assert isinstance(checkout, ConfigError)
    [line] = checkout.lines()
    assert line.startswith(f".github/gantry.yml:2: {problem}")


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


async def test_a_body_trickled_in_unsigned_never_holds_the_inbox_back(gantry: Gantry) -> None:
    """Work after the answer gives way to deliveries being answered; a client that opens a
    request and never finishes its body is not one (it is not verified), so a mention sent
    meanwhile still becomes a task without waiting out the inbox's patience."""
    gantry.services.inbox.patience = 120.0  # only a quiet webhook lets the mention through
    reader, writer = await asyncio.open_connection(gantry.server.host, gantry.server.port)
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: gantry\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: slow\r\n"
        b'X-Hub-Signature-256: sha256=00\r\nContent-Length: 100000\r\n\r\n{"action": '
    )
    await writer.drain()
    try:
        payload = gantry.examples("issue_comment")[0]
        delivery = gantry.delivery("issue_comment", payload, body="@gantry fix it", number=1)
        assert await gantry.answer(delivery) == (200, {"outcome": "accepted"})
        await asyncio.wait_for(gantry.services.inbox.drain(), 30)  # not its 120 s of patience
        assert not reader.at_eof()  # the trickling request was still open all along
    finally:
        writer.close()
    assert len(await gantry.tasks()) == 1
