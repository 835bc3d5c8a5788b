"""Publishing a task's work on GitHub: a branch with one commit, and a pull request."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.branches import BranchLedger, MemoryLedger, branch_name, check_ref_format
from bot.github_client import UncertainWriteError
from bot.pull_requests import PullRequest, find_open_pull, pull_of
from bot.reports import PullRequestReport, pr_body
from bot.user_ids import UserIds
from runner.mirror import Credential, Mirrors, auth_env, current_token, git
from runner.patch_policy import changed_paths
from runner.pipeline import Published, Work
from runner.publish import (
    Identity,
    Publication,
    PublishError,
    PushRejectedError,
    commit_message,
    publish,
    subject_line,
    user_identity,
)
from runner.task import Task, TaskBranch

log = logging.getLogger(__name__)
MAX_LISTED_FILES = 30
# After an unclear answer to `POST /pulls`, look the PR up by its head, then try again.
PULL_RETRY_DELAYS_S = (1.0, 3.0)
UNCLEAR = (gidgethub.GitHubBroken, UncertainWriteError, aiohttp.ClientError, TimeoutError)
LABEL_ERRORS = (gidgethub.HTTPException, *UNCLEAR)
CLOSED_REFUSAL = (
    "pull request #{number} was {how} before this round could push, so nothing was pushed; "
    "reopen it, or ask on an issue for a new one"
)
MOVED_REFUSAL = (
    "the branch `{branch}` moved while this round ran (from {start:.7}, where the round "
    "started, to {now:.7}), so nothing was pushed: the checks never ran on both changes "
    "together. Comment `@{handle} retry` to run the round again on the new head"
)
FORK_REFUSAL = (
    "this pull request comes from a fork, and Gantry cannot push to forks; "
    "ask on an issue or on a branch of this repository instead"
)


def change_summary(patch: bytes) -> str:
    """When the agent wrote no commit message: the files the change touches."""
    paths = sorted(changed_paths(patch))
    shown = "\n".join(f"- `{path}`" for path in paths[:MAX_LISTED_FILES])
    more = len(paths) - MAX_LISTED_FILES
    return shown + (f"\n- … and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Target:
    """Where the commit goes: the branch, what it starts from, and the PR's base."""

    branch: str
    start_sha: str
    base: str
    expected_remote: str | None
    existing_pull_url: str | None = None
    # The commit an earlier try of the task pushed there: recorded, never pushed again.
    pushed: str | None = None


async def remote_heads(url: str, credential: Credential) -> dict[str, str]:
    """Branch → SHA on the remote, read with a token taken now, in the environment only."""
    token = await current_token(credential)
    out = await git(None, ["ls-remote", "--heads", url], auth_env(token), token)
    heads = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        heads[ref.removeprefix("refs/heads/")] = sha
    return heads


async def bot_identity_of(gh: GitHubAPI, slug: str) -> Identity:
    """The App's bot user as GitHub attributes commits: `<id>+<slug>[bot]@users.noreply…`."""
    login = f"{slug}[bot]"
    user = await gh.getitem("/users/{username}", {"username": login})
    return user_identity(login, int(user["id"]))


@dataclass
class GitHubPublisher:
    """Turns `Work` into a commit on a branch and a PR; follow-ups push to the same PR.

    One PR per task whatever happens: the branch is fixed for the task the first time it is
    chosen, the PR is recorded the moment it exists, and a retry finds and reuses both."""

    gh: GitHubAPI
    task: Task
    mirrors: Mirrors
    token: Credential
    slug: str
    task_url: str | None = None
    ledger: BranchLedger = field(default_factory=MemoryLedger)
    retry_delays: tuple[float, ...] = PULL_RETRY_DELAYS_S
    user_ids: UserIds = field(default_factory=UserIds)

    async def publish(self, work: Work) -> Published:
        """The PR and the commit this try pushed for it (None when an earlier try pushed)."""
        kept = await self.ledger.task_branch(self.task.id)
        if kept is not None and kept.pull_url is not None:
            return Published(kept.pull_url)  # an earlier try of this task opened it
        # Who commits, what the commit says and where it goes do not depend on each other: the
        # two API calls and the remote's heads are asked for at once.
        author, message, first = await asyncio.gather(
            bot_identity_of(self.gh, self.slug), self.message(work), self.target(work)
        )
        for attempt in (1, 2):
            target = first if attempt == 1 else await self.target(work)
            await check_ref_format(target.branch)
            if target.existing_pull_url is None and target.expected_remote is not None:
                # Our branch from an earlier try: its PR may exist though we never heard so.
                found = await find_open_pull(self.gh, self.task.repo, target.branch)
                if found is not None:
                    return await self.keep(found.html_url, None)
            if target.pushed is not None and target.existing_pull_url is not None:
                return await self.keep(target.existing_pull_url, target.pushed)
            keep = partial(self.ledger.record_commit, self.task.id, target.start_sha)
            try:
                sha = await publish(self.publication(work, target, author, message), keep)
            except PushRejectedError:
                if attempt == 2:
                    raise
                continue  # someone pushed meanwhile: look again (a follow-up refuses then)
            if target.existing_pull_url is not None:
                return await self.keep(target.existing_pull_url, sha)
            return await self.keep((await self.open(work, target)).html_url, sha)
        raise PublishError("unreachable")

    async def keep(self, url: str, sha: str | None) -> Published:
        """Record the task's PR before anything else can happen to the task."""
        await self.ledger.record_pull(self.task.id, url)
        return Published(url, sha)

    async def message(self, work: Work) -> str:
        subject, _, body = (work.message.strip() or self.task.request).partition("\n")
        requester = await self.user_ids.co_author(self.gh, self.task.requester)
        return commit_message(subject or self.task.title, body, requester)

    def publication(
        self, work: Work, target: Target, author: Identity, message: str
    ) -> Publication:
        return Publication(
            mirror=self.mirrors.path(self.task.repo),
            start_sha=target.start_sha,
            patch=work.patch,
            branch=target.branch,
            message=message,
            author=author,
            clone_url=self.task.clone_url,
            token=self.token,
            expected_remote=target.expected_remote,
        )

    async def target(self, work: Work) -> Target:
        heads = await remote_heads(self.task.clone_url, self.token)
        prefix = work.config.pull_request.branch_prefix
        if not self.task.is_pull_request:
            # An issue's request may name the branch to start from; its PR goes back there.
            base = self.task.head_ref or self.task.default_branch
            return await self.own_branch(prefix, heads, work.base_sha, base)
        pull = await self.pull()
        if pull.get("state", "open") != "open":
            how = "merged" if pull.get("merged") or pull.get("merged_at") else "closed"
            raise PublishError(CLOSED_REFUSAL.format(number=self.task.number, how=how))
        if pull["head"]["repo"] is None or pull["head"]["repo"]["full_name"] != self.task.repo:
            raise PublishError(FORK_REFUSAL)
        head_ref = str(pull["head"]["ref"])
        own = head_ref.startswith(prefix) or work.config.pull_request.push_to_pull_requests
        if own and head_ref in heads:
            return await self.onto_pull(work, head_ref, heads[head_ref], str(pull["html_url"]))
        # A person's PR: a stacked PR against its branch, theirs left untouched.
        return await self.own_branch(prefix, heads, work.base_sha, head_ref)

    async def onto_pull(self, work: Work, branch: str, remote: str, url: str) -> Target:
        """A follow-up on Gantry's own PR (or any PR, when the config says so): one more
        commit on its branch, on the head the round worked from. A branch that moved since
        is refused, not merged into: the checks never ran on what that would push."""
        await self.ledger.fix_branch(self.task.id, branch)
        target = Target(branch, work.base_sha, branch, work.base_sha, url)
        if remote == work.base_sha:
            return target
        pushed = await self.pushed_earlier(remote)
        if pushed is None:
            moved = {"start": work.base_sha, "now": remote, "handle": self.slug}
            raise PublishError(MOVED_REFUSAL.format(branch=branch, **moved))
        return dataclasses.replace(target, pushed=pushed)

    async def pushed_earlier(self, remote: str) -> str | None:
        """The commit an earlier try of this task made, when the branch (at `remote`) holds
        it: that try pushed, then stopped before it could record so."""
        kept = await self.ledger.task_branch(self.task.id)
        commit = kept.commit_sha if kept is not None else None
        if commit is None or commit == remote:
            return commit
        await self.mirrors.ensure(self.task.repo, self.task.clone_url, remote, self.token)
        return commit if await self.mirrors.is_ancestor(self.task.repo, commit, remote) else None

    async def own_branch(self, prefix: str, heads: dict[str, str], start: str, base: str) -> Target:
        """The task's own new branch: named once, then the same name on every retry; what an
        earlier try pushed there is replaced by this try's commit."""
        kept: TaskBranch | None = await self.ledger.task_branch(self.task.id)
        if kept is None:
            name = branch_name(prefix, self.task.number, self.task.title, heads)
            name = await self.ledger.fix_branch(self.task.id, name)
        else:
            name = kept.branch
        return Target(name, start, base, heads.get(name))

    async def pull(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.gh.getitem(
            "/repos/{+repo}/pulls/{number}", {"repo": self.task.repo, "number": self.task.number}
        )
        return data

    async def open(self, work: Work, target: Target) -> PullRequest:
        """Open the PR; after an unclear answer, look for it by its head before trying again."""
        data = self.pull_request(work, target)
        for tries, delay in enumerate((*self.retry_delays, None), start=1):
            try:
                found = await find_open_pull(self.gh, self.task.repo, target.branch)
                if found is not None:
                    return found
                pull = pull_of(await self.gh.post("/repos/{+repo}/pulls", self.repo, data=data))
            except UNCLEAR as exc:
                if delay is None:
                    raise PublishError(pull_failure(target.branch, exc, tries)) from exc
                log.warning("task %s: opening the PR: %s; looking again", self.task.id, exc)
                await asyncio.sleep(delay)
                continue
            except gidgethub.HTTPException as exc:
                # A clear refusal (a rate limit, 422): no use trying again, but the work is
                # pushed, and people should know where.
                raise PublishError(pull_failure(target.branch, exc, tries)) from exc
            await self.ledger.record_pull(self.task.id, pull.html_url)
            await self.label(pull, list(work.config.pull_request.labels))
            return pull
        raise PublishError("unreachable")

    @property
    def repo(self) -> dict[str, str]:
        return {"repo": self.task.repo}

    def pull_request(self, work: Work, target: Target) -> dict[str, Any]:
        """The `POST /pulls` body: title, head, base, the report, draft when checks fail."""
        config = work.config.pull_request
        failing = any(not check.passed for check in work.checks)
        report = PullRequestReport(
            request=self.task.request,
            requester=self.task.requester,
            summary=work.message.strip() or change_summary(work.patch),
            checks=work.checks,
            blocked=work.blocked,
            closes=None if self.task.is_pull_request else self.task.number,
            task_url=self.task_url,
            usage=work.usage,
            attempts=work.attempts,
        )
        return {
            "title": subject_line(self.task.title or self.task.request),
            "head": target.branch,
            "base": target.base,
            "body": pr_body(report),
            "draft": config.draft is True or (config.draft == "auto" and failing),
        }

    async def label(self, pull: PullRequest, labels: list[str]) -> None:
        """Labels on the PR; the PR stands without them if GitHub fails now."""
        if not labels:
            return
        try:
            await self.gh.post(
                "/repos/{+repo}/issues/{number}/labels",
                {**self.repo, "number": pull.number},
                data={"labels": labels},
            )
        except LABEL_ERRORS as exc:
            log.warning("task %s: labelling %s failed: %s", self.task.id, pull.html_url, exc)


def pull_failure(branch: str, exc: BaseException, tries: int) -> str:
    """Why no PR was opened, and where the work is meanwhile."""
    status = getattr(exc, "status_code", None)
    what = f"{int(status)} {exc}" if isinstance(status, int) else f"{type(exc).__name__} {exc}"
    return (
        f"GitHub did not open the pull request ({what.strip()}, {tries} "
        f"{'try' if tries == 1 else 'tries'}); the work is pushed to the branch `{branch}`"
    )
