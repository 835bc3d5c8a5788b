"""A running Gantry intake wired to the GitHub stand-in, with a repo, users and a PR."""

from __future__ import annotations

import asyncio
import copy
import os
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from bot.app import SERVICES, Services
from bot.github_client import GitHubClient
from config.settings import Settings
from forge.sender import Delivery, Rewrite, build_delivery, load_examples, rewrite
from forge.server import AppCredentials, Forge
from gantry.compose import create_app
from runner.task import Task, TaskState

SECRET = "webhook-secret-for-tests"
OWNER, REPO = "octo", "hello"
WRITER, READER, BOT = "alice", "rita", "dependabot[bot]"


@dataclass
class Gantry:
    """The intake under test and the world around it."""

    forge: Forge
    server: TestServer
    settings: Settings
    creds: AppCredentials
    installation_id: int
    issue_number: int
    pull_number: int

    @property
    def url(self) -> str:
        return str(self.server.make_url("/webhook"))

    @property
    def services(self) -> Services:
        return self.server.app[SERVICES]

    def examples(self, event: str) -> list[dict[str, Any]]:
        """Every real example payload of `event`."""
        groups = load_examples(self.forge.github_data.webhooks)
        return [copy.deepcopy(dict(e)) for g in groups if g["name"] == event for e in g["examples"]]

    def delivery(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        sender: str = WRITER,
        body: str | None = None,
        number: int | None = None,
        secret: str = SECRET,
        repo: str = REPO,
        installation_id: int | None = None,
    ) -> Delivery:
        """A real payload pointed at one of the stand-in's repos, signed."""
        record = self.forge.repo(OWNER, repo)
        spec = Rewrite(
            owner=OWNER,
            repo=repo,
            html_url=self.forge.base_url,
            api_url=self.forge.api_url,
            installation_id=installation_id or self.installation_id,
            sender=sender,
            repo_id=record.id,
            default_branch=record.default_branch,
            body=body,
            number=number,
        )
        return build_delivery(event, rewrite(dict(payload), spec), secret)

    async def answer(self, delivery: Delivery, **headers: str) -> tuple[int, dict[str, Any]]:
        """POST a delivery (headers may be overridden); status and JSON answer."""
        sent = {**delivery.headers, **headers}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=delivery.body, headers=sent) as response,
        ):
            return response.status, await response.json()

    async def post(self, delivery: Delivery, **headers: str) -> tuple[int, dict[str, Any]]:
        """POST a delivery and let the inbox handle it: the status, and the outcome the store
        recorded for an accepted delivery (else the answer itself)."""
        status, answer = await self.answer(delivery, **headers)
        if answer.get("outcome") != "accepted":
            return status, answer
        return status, {"outcome": await self.outcome(delivery_id(delivery, headers))}

    async def outcome(self, delivery_id: str) -> str | None:
        """What a delivery led to, once the inbox has handled what it holds."""
        await self.services.inbox.drain()
        entry = await self.services.store.inbox_entry(delivery_id)
        assert entry is not None, f"delivery {delivery_id} is not in the inbox"
        return entry.outcome

    async def post_raw(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """POST any bytes with any headers; status and text answer."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=dict(headers)) as response,
        ):
            return response.status, await response.text()

    async def settle(self) -> None:
        """Let the inbox, then reactions and replies, finish."""
        await self.services.inbox.drain()
        await self.services.background.drain()

    async def tasks(self) -> list[Task]:
        return await self.services.store.with_state(TaskState.QUEUED)


def delivery_id(delivery: Delivery, overrides: Mapping[str, str]) -> str:
    """The delivery id a POST carried, overridden or not."""
    sent = {k.lower(): v for k, v in {**delivery.headers, **overrides}.items()}
    return sent["x-github-delivery"]


async def git(*args: str, cwd: Path) -> None:
    """Run git without blocking the loop that serves the stand-in."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def open_pull(forge: Forge, installation_id: int, work: Path) -> int:
    """Push a branch and open a PR from it, as the App would."""
    token = forge.mint_token(installation_id)
    await git("clone", "-q", forge.git_url(OWNER, REPO, token), str(work), cwd=work.parent)
    await git("switch", "-q", "-c", "feature", cwd=work)
    (work / "feature.txt").write_text("feature\n")
    await git("add", ".", cwd=work)
    await git("-c", "user.name=A", "-c", "user.email=a@example.com", "commit", "-qm", "f", cwd=work)
    await git("push", "-q", "origin", "feature", cwd=work)
    async with aiohttp.ClientSession() as session:
        gh = GitHubClient(session, base_url=forge.api_url)
        pull = await gh.post(
            f"/repos/{OWNER}/{REPO}/pulls",
            data={"title": "Feature", "head": "feature", "base": "main"},
            oauth_token=token,
        )
    return int(pull["number"])


@pytest.fixture
def database_url() -> str | None:
    """The store of the `gantry` fixture: SQLite in its data dir unless a module overrides it."""
    return None


@pytest_asyncio.fixture
async def gantry(forge: Forge, tmp_path: Path, database_url: str | None) -> AsyncIterator[Gantry]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# hello\n")
    await forge.create_repo(OWNER, REPO, source)
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, WRITER, "write")
    forge.set_permission(OWNER, REPO, READER, "read")
    forge.add_user(BOT, "Bot")
    issue = forge.create_issue(OWNER, REPO, "Flaky date test", "It fails at midnight.")
    pull_number = await open_pull(forge, installation_id, tmp_path / "work")
    settings = Settings(
        github_webhook_secret=SECRET,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=tmp_path / "data",
        database_url=database_url,
        inbox_retry_first=0.02,
        inbox_retry_limit=0.5,
    )
    server = TestServer(create_app(settings, workers=False))
    await server.start_server()
    gantry = Gantry(forge, server, settings, creds, installation_id, issue.number, pull_number)
    try:
        yield gantry
    finally:
        await gantry.server.close()  # the server a restart test put in its place, if any
