"""One PR per task on the stand-in: lost answers, failed POSTs, retries, short-lived tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.branches import MemoryLedger
from bot.github_client import RetryPolicy
from bot.publisher import GitHubPublisher
from bot.tokens import InstallationTokens
from config.repo_config import RepoConfig
from config.settings import Settings
from forge.faults import FaultKind
from forge.server import Forge
from forge.state import AfterCreate
from runner.mirror import Mirrors
from runner.pipeline import Published, Work
from runner.publish import PublishError
from runner.store import SQLiteTaskStore
from runner.task import TaskBranch
from tests.bot.test_progress import task_on
from tests.publish.test_publish import make_patch

OWNER, NAME = "octo", "hello"
PULLS = "/repos/{owner}/{repo}/pulls"
FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, max_wait=5.0)


@dataclass
class Stage:
    """A repository on the stand-in, a real token cache, a real store, and the agent's work."""

    forge: Forge
    tokens: InstallationTokens
    installation_id: int
    store: SQLiteTaskStore
    mirrors: Mirrors
    work: Work
    issue: int
    later: list[float]  # how far the token cache's clock is ahead of now

    def publisher(self, task_id: int = 5) -> GitHubPublisher:
        task = task_on(
            self.issue, None, id=task_id, title="Fix the README",
            clone_url=self.forge.git_url(OWNER, NAME),
        )  # fmt: skip
        return GitHubPublisher(
            self.tokens.client(self.installation_id), task, self.mirrors,
            lambda: self.tokens.get(self.installation_id), "gantry",
            ledger=self.store, retry_delays=(0.0, 0.0),
        )  # fmt: skip


@pytest_asyncio.fixture
async def stage(forge: Forge, tmp_path: Path) -> AsyncIterator[Stage]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# hello\n")
    await forge.create_repo(OWNER, NAME, source)
    issue = forge.create_issue(OWNER, NAME, "Fix the README")
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, OWNER, [NAME])
    settings = Settings(
        github_webhook_secret="x",
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
    )
    base = (await forge.branches(OWNER, NAME))["main"]
    mirrors = Mirrors(tmp_path / "data")
    store = await SQLiteTaskStore.open(tmp_path / "data" / "gantry.db")
    async with aiohttp.ClientSession() as session:
        later = [0.0]
        tokens = InstallationTokens(
            session, settings, policy=FAST, clock=lambda: time.time() + later[0]
        )
        url = forge.git_url(OWNER, NAME)
        await mirrors.ensure(f"{OWNER}/{NAME}", url, base, lambda: tokens.get(installation_id))
        patch = make_patch(tmp_path, mirrors.path(f"{OWNER}/{NAME}"), base, {"README.md": "x\n"})
        work = Work(patch, "Fix the README", (), (), RepoConfig(), base)
        try:
            yield Stage(forge, tokens, installation_id, store, mirrors, work, issue.number, later)
        finally:
            await store.close()


def branches_of_task(branches: dict[str, str]) -> list[str]:
    return sorted(b for b in branches if b.startswith("gantry/"))


async def test_a_lost_answer_to_post_pulls_finds_the_pull_it_opened(stage: Stage) -> None:
    stage.forge.state.after_create_pull.append(AfterCreate(status=502))
    published = await stage.publisher().publish(stage.work)
    [pull] = stage.forge.pulls(OWNER, NAME)
    assert published.url.endswith(f"/pull/{pull.issue.number}")
    # The commit handed back is the one on the branch, read from the stand-in's repository.
    assert published.head_sha == (await stage.forge.branches(OWNER, NAME))[pull.head]
    kept = await stage.store.task_branch(5)
    assert kept is not None
    assert (kept.branch, kept.pull_url) == (pull.head, published.url)


async def test_a_500_once_is_looked_up_then_retried_into_one_pull(stage: Stage) -> None:
    stage.forge.inject_fault("POST", PULLS, "error", count=1, status=500)
    await stage.publisher().publish(stage.work)
    assert len(stage.forge.pulls(OWNER, NAME)) == 1
    posts = [
        r.status for r in stage.forge.requests if r.method == "POST" and r.path.endswith("/pulls")
    ]
    assert posts == [500, 201]


async def test_502_three_times_fails_naming_the_pushed_branch_and_a_retry_reuses_it(
    stage: Stage,
) -> None:
    stage.forge.inject_fault("POST", PULLS, "error", count=3, status=502)
    with pytest.raises(PublishError, match=r"502 .*3 tries.*`gantry/\d+-fix-the-readme`"):
        await stage.publisher().publish(stage.work)
    assert stage.forge.pulls(OWNER, NAME) == []
    first = branches_of_task(await stage.forge.branches(OWNER, NAME))
    # The task runs again (a retry after a crash): the same branch, now with its PR.
    url = (await stage.publisher().publish(stage.work)).url
    [pull] = stage.forge.pulls(OWNER, NAME)
    assert branches_of_task(await stage.forge.branches(OWNER, NAME)) == first == [pull.head]
    assert url.endswith(f"/pull/{pull.issue.number}")


async def test_a_retry_after_the_pull_exists_opens_no_other(stage: Stage) -> None:
    url = (await stage.publisher().publish(stage.work)).url
    before = await stage.forge.branches(OWNER, NAME)
    # Nothing pushed on this try: no commit of its own to hand back.
    assert await stage.publisher().publish(stage.work) == Published(url, None)
    assert len(stage.forge.pulls(OWNER, NAME)) == 1
    assert await stage.forge.branches(OWNER, NAME) == before  # nothing pushed again


async def test_a_pull_opened_but_never_recorded_is_found_by_its_head(stage: Stage) -> None:
    url = (await stage.publisher().publish(stage.work)).url
    kept = await stage.store.task_branch(5)
    assert kept is not None
    # As if the process died between GitHub opening the PR and the store keeping it.
    retry = stage.publisher()
    retry.ledger = MemoryLedger({5: TaskBranch(kept.branch)})
    before = await stage.forge.branches(OWNER, NAME)
    assert (await retry.publish(stage.work)).url == url
    assert len(stage.forge.pulls(OWNER, NAME)) == 1
    assert await stage.forge.branches(OWNER, NAME) == before


async def test_another_task_gets_its_own_branch(stage: Stage) -> None:
    await stage.publisher(task_id=5).publish(stage.work)
    stage.work = Work(stage.work.patch, "again", (), (), RepoConfig(), stage.work.base_sha)
    await stage.publisher(task_id=6).publish(stage.work)
    heads = sorted(p.head for p in stage.forge.pulls(OWNER, NAME))
    assert len(heads) == 2
    assert heads[1] == f"{heads[0]}-2"


async def test_a_publisher_made_hours_ago_still_pushes_with_a_live_token(stage: Stage) -> None:
    publisher = stage.publisher()  # made when the task started
    minted = len(access_token_requests(stage.forge))
    # Two hours later: every token handed out so far is long dead, on both sides.
    stage.later[0] += 2 * 3600
    stage.forge.expire_tokens()
    await publisher.publish(stage.work)
    assert len(stage.forge.pulls(OWNER, NAME)) == 1
    assert len(access_token_requests(stage.forge)) > minted  # fresh ones, taken at use


def access_token_requests(forge: Forge) -> list[object]:
    return [r for r in forge.requests if r.path.endswith("/access_tokens")]


@pytest.mark.parametrize(
    ("kind", "status", "said"),
    [("error", 422, "422 "), ("primary_rate_limit", 403, "rate-limited until")],
)
async def test_a_clear_refusal_to_open_the_pull_names_the_pushed_branch(
    stage: Stage, kind: FaultKind, status: int, said: str
) -> None:
    stage.forge.inject_fault("POST", PULLS, kind, count=None, status=status, retry_after=3600)
    with pytest.raises(PublishError) as caught:
        await stage.publisher().publish(stage.work)
    [branch] = branches_of_task(await stage.forge.branches(OWNER, NAME))
    assert str(caught.value).endswith(f"1 try); the work is pushed to the branch `{branch}`")
    assert said in str(caught.value)
    assert stage.forge.pulls(OWNER, NAME) == []
    posts = [
        r.status for r in stage.forge.requests if r.method == "POST" and r.path.endswith("/pulls")
    ]
    assert posts == [status]  # refused clearly: not asked again
