"""Publishing a task's work on GitHub: a branch with one commit, and a pull request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI

from bot.branches import branch_name, check_ref_format
from bot.pull_requests import open_pull
from bot.reports import PullRequestReport, pr_body
from runner.mirror import Mirrors, auth_env, git
from runner.patch_policy import changed_paths
from runner.pipeline import Work
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
from runner.store import Task

MAX_LISTED_FILES = 30
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


async def remote_heads(url: str, token: str | None) -> dict[str, str]:
    """Branch → SHA on the remote, read with the token in the environment only."""
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
    """Turns `Work` into a commit on a branch and a PR; follow-ups push to the same PR."""

    gh: GitHubAPI
    task: Task
    mirrors: Mirrors
    token: str | None
    slug: str
    task_url: str | None = None

    async def publish(self, work: Work) -> str:
        author = await bot_identity_of(self.gh, self.slug)
        message = self.message(work)
        for attempt in (1, 2):
            target = await self.target(work)
            await check_ref_format(target.branch)
            try:
                await publish(self.publication(work, target, author, message))
            except PushRejectedError:
                if attempt == 2:
                    raise
                continue  # someone pushed meanwhile: build on their head
            if target.existing_pull_url is not None:
                return target.existing_pull_url
            return await self.open(work, target)
        raise PublishError("unreachable")

    def message(self, work: Work) -> str:
        subject, _, body = (work.message.strip() or self.task.request).partition("\n")
        requester = user_identity(self.task.requester, None)
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
            name = branch_name(prefix, self.task.number, self.task.title, heads)
            return Target(name, work.base_sha, self.task.default_branch, None)
        pull = await self.pull()
        if pull["head"]["repo"] is None or pull["head"]["repo"]["full_name"] != self.task.repo:
            raise PublishError(FORK_REFUSAL)
        head_ref = str(pull["head"]["ref"])
        own = head_ref.startswith(prefix) or work.config.pull_request.push_to_pull_requests
        if own and head_ref in heads:
            # A follow-up on Gantry's own PR (or any PR, when the config says so): one more
            # commit on its branch, built on whatever its head is now.
            remote = heads[head_ref]
            if remote != work.base_sha:
                await self.mirrors.ensure(self.task.repo, self.task.clone_url, remote, self.token)
            return Target(head_ref, remote, head_ref, remote, str(pull["html_url"]))
        # A person's PR: a stacked PR against its branch, theirs left untouched.
        name = branch_name(prefix, self.task.number, self.task.title, heads)
        return Target(name, work.base_sha, head_ref, None)

    async def pull(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.gh.getitem(
            "/repos/{+repo}/pulls/{number}", {"repo": self.task.repo, "number": self.task.number}
        )
        return data

    async def open(self, work: Work, target: Target) -> str:
        config = work.config.pull_request
        failing = any(not check.passed for check in work.checks)
        draft = config.draft is True or (config.draft == "auto" and failing)
        report = PullRequestReport(
            request=self.task.request,
            requester=self.task.requester,
            summary=work.message.strip() or change_summary(work.patch),
            checks=work.checks,
            blocked=work.blocked,
            closes=None if self.task.is_pull_request else self.task.number,
            task_url=self.task_url,
            usage=work.usage,
        )
        pull = await open_pull(
            self.gh,
            self.task.repo,
            branch=target.branch,
            base=target.base,
            title=subject_line(self.task.title or self.task.request),
            body=pr_body(report),
            draft=draft,
            labels=list(config.labels),
        )
        return pull.html_url
