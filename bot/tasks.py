"""Running a stored task for GitHub: the pipeline with GitHub's source, reporter and publisher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gidgethub.abc import GitHubAPI

from bot import task_page
from bot.progress import GitHubReporter
from bot.publisher import GitHubPublisher, remote_heads
from bot.repo_files import default_branch_checkout
from config.loader import Checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
from config.settings import Settings
from runner.executor import Executor
from runner.mirror import Mirrors
from runner.patch_policy import PatchPolicy
from runner.pipeline import PipelineDeps, Publisher, Source, TaskFailedError, Work, run_task
from runner.reporting import StoreReporter, Tee
from runner.results import TaskResult
from runner.store import Task, TaskStore
from runner.tasklog import TaskLog

log = logging.getLogger(__name__)


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

    def log_path(self, task: Task) -> Path:
        return task_page.log_path(self.settings.data_dir, task.id)

    async def source(self, task: Task, token: str | None) -> Source:
        """The SHA to work on: a PR's head, or the default branch's head now."""
        if task.is_pull_request and task.head_sha:
            # Branches are fetched anyway; a fork's head is then fetched by its SHA.
            return Source(task.head_sha, None, token)
        heads = await remote_heads(task.clone_url, token)
        if task.default_branch not in heads:
            raise TaskFailedError("prepare", f"the branch {task.default_branch!r} is gone")
        return Source(heads[task.default_branch], None, token)

    async def earlier(self, task: Task) -> list[Task]:
        """The tasks before this one on its issue or PR (the agent's `rounds`)."""
        return [t for t in await self.store.thread_tasks(task.repo, task.number) if t.id < task.id]

    async def checkout(self, gh: GitHubAPI, task: Task) -> Checkout | ConfigError:
        """Config and AGENTS.md from the default branch: a PR never changes what runs."""
        return await default_branch_checkout(gh, task.repo, task.default_branch, self.settings)

    async def __call__(self, task: Task) -> TaskResult:
        gh = self.github(task.installation_id)
        token = await self.token(task.installation_id)
        deps = PipelineDeps(
            environments=self.environments,
            secrets=self.secrets,
            agent_command=self.settings.agent_command,
            resolve_source=lambda t: self.source(t, token),
            load_checkout=lambda t, _source: self.checkout(gh, t),
            patch_policy=PatchPolicy(allow_workflows=self.settings.allow_workflow_changes),
            earlier_tasks=self.earlier,
        )
        reporter = Tee(
            (StoreReporter(self.store, task.id), GitHubReporter(gh, task, self.task_url(task)))
        )
        publisher = SavingPublisher(
            GitHubPublisher(gh, task, self.mirrors, token, self.slug, self.task_url(task)),
            task_page.patch_path(self.settings.data_dir, task.id),
        )
        path = self.log_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        tasklog = TaskLog(path)
        try:
            return await run_task(task, deps, reporter, publisher, tasklog)
        finally:
            tasklog.close()

    def task_url(self, task: Task) -> str | None:
        """The signed link to the task page, when the server knows its public address."""
        if self.settings.public_url is None:
            return None
        return task_page.signed_url(
            str(self.settings.public_url), self.settings.webhook_secret, task.id
        )


@dataclass
class SavingPublisher:
    """Keeps the patch for the task page, then publishes."""

    inner: Publisher
    path: Path

    async def publish(self, work: Work) -> str:
        await asyncio.to_thread(self._save, work.patch)
        return await self.inner.publish(work)

    def _save(self, patch: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(patch)
