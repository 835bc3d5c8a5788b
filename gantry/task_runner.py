"""Running a stored task for GitHub: the pipeline with GitHub's source, reporter and publisher."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gidgethub.abc import GitHubAPI

from bot import task_page
from bot.answers import GitHubAnswers
from bot.progress import GitHubReporter
from bot.publisher import GitHubPublisher, remote_heads
from bot.pull_requests import fetch_head
from bot.repo_files import fetch_checkout
from bot.user_ids import UserIds
from config.loader import Checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
from config.settings import Settings
from gantry.metrics import Metrics
from gateway import ModelGateway
from runner.environment import EnvironmentRequest
from runner.executor import Executor
from runner.log_shipping import shipping
from runner.mirror import Credential, Mirrors, TokenSource, current_token
from runner.modes import Mode, mode_of
from runner.patch_policy import PatchPolicy
from runner.pipeline import (
    PipelineDeps,
    Published,
    Publisher,
    Source,
    TaskFailedError,
    Work,
    run_task,
)
from runner.reporting import StoreReporter, Tee
from runner.results import TaskResult
from runner.store import TaskStore
from runner.task import Task
from runner.tasklog import TaskLog
from runner.worker import not_cancelled

log = logging.getLogger(__name__)


@dataclass
class StartHead:
    """Where a task on a pull request starts: read once, when first asked, so that the check
    run the task opens and the code it works on are the same commit."""

    read: Callable[[], Awaitable[str]]
    _sha: str | None = None

    async def sha(self) -> str:
        if self._sha is None:
            self._sha = await self.read()
        return self._sha


@dataclass
class TrustedHead:
    """The default branch's head for one task: the only code that runs with secrets.

    Read once, so that the task's source, its config and its environment agree on it."""

    clone_url: str
    branch: str
    token: Credential
    _sha: str | None = None

    async def sha(self) -> str:
        if self._sha is None:
            self._sha = await branch_head(self.clone_url, self.branch, self.token)
        return self._sha


async def branch_head(clone_url: str, branch: str, token: Credential) -> str:
    """The SHA a branch points at now; the task fails when the branch is gone."""
    heads = await remote_heads(clone_url, token)
    if branch not in heads:
        raise TaskFailedError("prepare", f"the branch {branch!r} is gone")
    return heads[branch]


class TrustBoundExecutor:
    """The server's executor with every request bound to the task's trusted head: a task
    on any other SHA (a pull request's head) gets setup and its secrets only from there."""

    def __init__(self, inner: Executor[Any], trusted: TrustedHead) -> None:
        self.inner, self.trusted, self.mirrors = inner, trusted, inner.mirrors

    async def prepare(self, request: EnvironmentRequest, tasklog: TaskLog) -> Any:
        """The environment from the trusted head, its mirror fetched with a token from now."""
        trusted_sha = await self.trusted.sha()
        token = await current_token(self.trusted.token)
        bound = dataclasses.replace(request, trusted_sha=trusted_sha, token=token)
        return await self.inner.prepare(bound, tasklog)

    async def release(self, environment: Any) -> None:
        await self.inner.release(environment)

    async def blocked_attempts(self, environment: Any) -> list[dict[str, Any]]:
        return await self.inner.blocked_attempts(environment)


@dataclass
class TaskRunner:
    """Everything a task needs on this server; `__call__` runs one to its end."""

    settings: Settings
    environments: Executor[Any]
    mirrors: Mirrors
    secrets: SecretStore
    github: Callable[[int], GitHubAPI]
    token: Callable[[int], Awaitable[str]]
    slug: str
    store: TaskStore
    gateway: ModelGateway | None = None
    # Requesters' GitHub ids for co-author trailers, looked up once per process.
    user_ids: UserIds = field(default_factory=UserIds)
    # A standalone worker ships each task's log and patch into the store, so that the server
    # (another host) shows them; in one process the server reads the files themselves.
    ship_logs: bool = False
    metrics: Metrics = field(default_factory=Metrics)

    def log_path(self, task: Task) -> Path:
        return task_page.log_path(self.settings.data_dir, task.id)

    async def source(
        self, task: Task, trusted: TrustedHead, start: StartHead | None = None
    ) -> Source:
        """The SHA to work on: a PR's head when the task starts (`start`), the head of the
        branch an issue's request named, or the default branch's head now. Its token is only
        for a fetch now; the environment takes a fresh one when it fetches."""
        token = await current_token(trusted.token)
        if task.is_pull_request and start is not None:
            return Source(await start.sha(), None, token)
        if not task.is_pull_request and task.head_ref and task.head_ref != trusted.branch:
            # Untrusted like a PR's head: the executor still sets up from the trusted head.
            return Source(await branch_head(task.clone_url, task.head_ref, token), None, token)
        return Source(await trusted.sha(), None, token)

    async def round_start(self, gh: GitHubAPI, task: Task) -> str:
        """Where a task on a PR starts: the PR's head now, not as it was when the task was
        asked for (a round queued behind another builds on that one's commit; a review, an
        answer or a plan is of the code as it is when it runs); on a retry of a round, where
        the earlier try built the commit it kept."""
        if mode_of(task.kind) is Mode.CODE:
            kept = await self.store.task_branch(task.id)
            if kept is not None and kept.start_sha is not None:
                return kept.start_sha
        return (await fetch_head(gh, task.repo, task.number)).sha

    async def earlier(self, task: Task) -> list[Task]:
        """The tasks before this one on its issue or PR (the agent's `rounds`)."""
        return [t for t in await self.store.thread_tasks(task.repo, task.number) if t.id < task.id]

    async def checkout(
        self, gh: GitHubAPI, task: Task, trusted: TrustedHead
    ) -> Checkout | ConfigError:
        """Config, AGENTS.md and the files auto_install reads, all at the trusted head: what
        runs with secrets never comes from a pull request."""
        return await fetch_checkout(gh, task.repo, await trusted.sha(), self.settings)

    async def __call__(self, task: Task) -> TaskResult:
        gh = self.github(task.installation_id)
        token = self.token_source(task.installation_id)
        trusted = TrustedHead(task.clone_url, task.default_branch, token)
        start = StartHead(lambda: self.round_start(gh, task)) if task.is_pull_request else None
        deps = PipelineDeps(
            environments=TrustBoundExecutor(self.environments, trusted),
            secrets=self.secrets,
            agent_command=self.settings.agent_command,
            resolve_source=lambda t: self.source(t, trusted, start),
            load_checkout=lambda t, _source: self.checkout(gh, t, trusted),
            patch_policy=PatchPolicy(allow_workflows=self.settings.allow_workflow_changes),
            earlier_tasks=self.earlier,
            gateway=self.gateway,
            record_usage=self.record_usage,
            answers=GitHubAnswers(gh, task, self.slug),
            max_attempts=self.settings.max_attempts,
            still_wanted=not_cancelled(self.store),
        )
        reporter = Tee(
            (
                StoreReporter(self.store, task.id),
                GitHubReporter(
                    gh,
                    task,
                    self.task_url(task),
                    self.repo_url(task),
                    start_head=start.sha if start is not None else None,
                ),
                self.metrics.reporter(),
            )
        )
        publisher = SavingPublisher(
            GitHubPublisher(
                gh,
                task,
                self.mirrors,
                token,
                self.slug,
                self.task_url(task),
                self.store,
                user_ids=self.user_ids,
            ),
            task_page.patch_path(self.settings.data_dir, task.id),
            self.store if self.ship_logs else None,
            task.id,
        )
        path = self.log_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        tasklog = TaskLog(path)
        try:
            if not self.ship_logs:
                return await run_task(task, deps, reporter, publisher, tasklog)
            async with shipping(self.store, task.id, path):
                return await run_task(task, deps, reporter, publisher, tasklog)
        finally:
            tasklog.close()

    def token_source(self, installation_id: int) -> TokenSource:
        """A token for each git call at the moment it runs (the cache keeps it fresh)."""

        async def fresh() -> str | None:
            return await self.token(installation_id)

        return fresh

    async def record_usage(self, task: Task, usage: dict[str, Any]) -> None:
        """Keep what the agent spent, for the task page."""
        await self.store.record_usage(task.id, json.dumps(usage))

    def task_url(self, task: Task) -> str | None:
        """The signed link to the task page, when the server knows its public address."""
        if self.settings.public_url is None:
            return None
        return task_page.signed_url(
            str(self.settings.public_url), self.settings.webhook_secret, task.id
        )

    def repo_url(self, task: Task) -> str | None:
        """The signed link to the task's repository's task list, likewise."""
        if self.settings.public_url is None:
            return None
        return task_page.signed_repo_url(
            str(self.settings.public_url), self.settings.webhook_secret, task.repo
        )


@dataclass
class SavingPublisher:
    """Keeps the patch for the task page (in the store too, for a server on another host),
    then publishes."""

    inner: Publisher
    path: Path
    store: TaskStore | None = None
    task_id: int = 0

    async def publish(self, work: Work) -> Published:
        await asyncio.to_thread(self._save, work.patch)
        if self.store is not None:
            await self.store.save_patch(self.task_id, work.patch)
        return await self.inner.publish(work)

    def _save(self, patch: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(patch)
