"""The requester as a linked co-author: `ID+login@users.noreply…`, its id looked up once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.github_client import GitHubClient, RetryPolicy
from bot.publisher import GitHubPublisher
from bot.user_ids import UserIds
from config.repo_config import RepoConfig
from forge.server import Forge
from runner.pipeline import Work
from tests.bot.test_progress import task_on
from tests.publish.test_publish import git_out, make_patch, setup

USER_ROUTE = "/users/{username}"
FAST = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, max_wait=1.0)


@pytest_asyncio.fixture
async def gh(forge: Forge) -> AsyncIterator[GitHubClient]:
    forge.add_user("alice")
    forge.add_user("bob")
    async with aiohttp.ClientSession() as session:
        yield GitHubClient(session, base_url=forge.api_url, token=None, policy=FAST)


def user_lookups(forge: Forge, login: str) -> list[int]:
    """The statuses of the stand-in's answers to `GET /users/{login}`."""
    return [r.status for r in forge.requests if r.method == "GET" and r.path == f"/users/{login}"]


def id_of(forge: Forge, login: str) -> int:
    return forge.state.users[login].id


async def test_the_trailer_carries_the_id_and_a_second_one_costs_no_request(
    forge: Forge, gh: GitHubClient
) -> None:
    ids = UserIds()
    first = await ids.co_author(gh, "alice")
    assert first.trailer() == (
        f"Co-authored-by: alice <{id_of(forge, 'alice')}+alice@users.noreply.github.com>"
    )
    again = await ids.co_author(gh, "Alice")  # logins are case-insensitive
    assert again.email == f"{id_of(forge, 'alice')}+Alice@users.noreply.github.com"
    assert user_lookups(forge, "alice") == [200]


async def test_concurrent_lookups_of_one_login_share_one_request(
    forge: Forge, gh: GitHubClient
) -> None:
    forge.inject_fault("GET", USER_ROUTE, "latency", count=None, delay=0.1)
    ids = UserIds()
    found = await asyncio.gather(*(ids.user_id(gh, login) for login in ["alice"] * 5 + ["bob"]))
    assert found == [id_of(forge, "alice")] * 5 + [id_of(forge, "bob")]
    assert (user_lookups(forge, "alice"), user_lookups(forge, "bob")) == ([200], [200])


async def test_an_expired_entry_is_looked_up_again(forge: Forge, gh: GitHubClient) -> None:
    now = [0.0]
    ids = UserIds(ttl=60.0, clock=lambda: now[0])
    await ids.user_id(gh, "alice")
    now[0] = 59.0
    await ids.user_id(gh, "alice")
    assert user_lookups(forge, "alice") == [200]
    now[0] = 61.0
    await ids.user_id(gh, "alice")
    assert user_lookups(forge, "alice") == [200, 200]


async def test_a_failed_lookup_falls_back_to_the_login_form_and_is_not_kept(
    forge: Forge, gh: GitHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    ids = UserIds()
    forge.inject_fault("GET", USER_ROUTE, "error", count=None, status=503)
    with caplog.at_level(logging.WARNING, logger="bot.user_ids"):
        fallback = await ids.co_author(gh, "alice")
    assert fallback.email == "alice@users.noreply.github.com"
    assert "no id for alice" in caplog.text
    forge.clear_faults()
    linked = await ids.co_author(gh, "alice")
    assert linked.email == f"{id_of(forge, 'alice')}+alice@users.noreply.github.com"


async def test_an_unknown_login_falls_back_too(forge: Forge, gh: GitHubClient) -> None:
    identity = await UserIds().co_author(gh, "nobody-here")
    assert identity.email == "nobody-here@users.noreply.github.com"
    assert user_lookups(forge, "nobody-here") == [404]


async def publish_for_alice(forge: Forge, tmp_path: Path) -> str:
    """A task by alice published on the stand-in; the commit message of its branch's head."""
    mirrors, token, base, url = await setup(forge, tmp_path)
    forge.add_user("alice")
    patch = make_patch(tmp_path, mirrors.path("octo/hello"), base, {"README.md": "x\n"})
    work = Work(patch, "Fix the README", (), (), RepoConfig(), base)
    task = task_on(forge.create_issue("octo", "hello", "Fix it").number, None, clone_url=url)
    async with aiohttp.ClientSession() as session:

        async def source() -> str:
            return token

        gh = GitHubClient(session, base_url=forge.api_url, token=source, policy=FAST)
        publisher = GitHubPublisher(gh, task, mirrors, token, "gantry", retry_delays=(0.0,))
        await publisher.publish(work)
    [pull] = forge.pulls("octo", "hello")
    return (await git_out(forge, "log", "-1", "--format=%B", pull.head)).rstrip()


async def test_the_published_commit_credits_the_requester_by_id(
    forge: Forge, tmp_path: Path
) -> None:
    message = await publish_for_alice(forge, tmp_path)
    assert message.endswith(
        f"Co-authored-by: alice <{id_of(forge, 'alice')}+alice@users.noreply.github.com>"
    )


async def test_a_publish_survives_a_failed_lookup_with_the_login_form(
    forge: Forge, tmp_path: Path
) -> None:
    forge.inject_fault("GET", "/users/alice", "error", count=None, status=502)
    message = await publish_for_alice(forge, tmp_path)
    assert message.endswith("Co-authored-by: alice <alice@users.noreply.github.com>")
    assert user_lookups(forge, "alice") == [502, 502]  # tried, then published without it
