"""From a trigger to a stored, queued task: the permission gate and the subcommands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from gidgethub.abc import GitHubAPI

from bot import replies
from bot.background import Background
from bot.commands import Command, Kind, help_text, parse_command
from bot.permissions import PermissionCache, reaches
from bot.repo_triggers import TriggerCache
from bot.triggers import Trigger, is_from_a_bot
from config.repo_config import TriggersConfig
from runner.queue import TaskQueue
from runner.store import ACTIVE_STATES, NewTask, Task, TaskState, TaskStore


class Outcome(StrEnum):
    """What a delivery led to; the webhook's answer names it."""

    IGNORED = "ignored"
    REFUSED = "refused"
    QUEUED = "queued"
    ANSWERED = "answered"


@dataclass
class Intake:
    """The deps of the intake: store, queue, GitHub clients and the bot's identity."""

    store: TaskStore
    queue: TaskQueue
    github: Callable[[int], GitHubAPI]
    handle: str
    background: Background
    permissions: PermissionCache
    triggers: TriggerCache
    on_cancel: Callable[[int], bool] | None = None
    on_reset_cache: Callable[[str], Awaitable[int]] | None = None

    @property
    def bot_login(self) -> str:
        return f"{self.handle}[bot]"

    async def on_comment(self, trigger: Trigger, delivery_id: str) -> Outcome:
        """A comment or review body: act if it mentions the handle and mentions are on."""
        if is_from_a_bot(trigger, self.handle):
            return Outcome.IGNORED
        command = parse_command(trigger.body, self.handle)
        if command is None:
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        if not config.mention:
            return Outcome.IGNORED
        return await self.on_command(gh, config, trigger, command, delivery_id)

    async def on_assigned(self, trigger: Trigger, assignee: str, delivery_id: str) -> Outcome:
        """An issue assigned to the App's bot user, when the repository allows it."""
        if assignee.lower() != self.bot_login.lower() or is_from_a_bot(trigger, self.handle):
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        if not config.assign:
            return Outcome.IGNORED
        return await self.on_issue(gh, config, trigger, delivery_id)

    async def on_labeled(self, trigger: Trigger, label: str, delivery_id: str) -> Outcome:
        """An issue given the repository's trigger label."""
        if is_from_a_bot(trigger, self.handle):
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        if config.label is None or label.lower() != config.label.lower():
            return Outcome.IGNORED
        return await self.on_issue(gh, config, trigger, delivery_id)

    async def on_issue(
        self, gh: GitHubAPI, config: TriggersConfig, trigger: Trigger, delivery_id: str
    ) -> Outcome:
        """The issue itself is the request."""
        command = Command(Kind.REQUEST, trigger.body)
        return await self.on_command(gh, config, trigger, command, delivery_id)

    async def on_command(
        self,
        gh: GitHubAPI,
        config: TriggersConfig,
        trigger: Trigger,
        command: Command,
        delivery_id: str,
    ) -> Outcome:
        """Check the requester's permission, then carry the command out."""
        level = await self.permissions.level(gh, trigger.repo, trigger.author)
        if not reaches(level, config.min_permission):
            if await self.store.first_refusal(trigger.repo, trigger.number):
                text = replies.refusal(trigger.author, config.min_permission)
                self.background.spawn(replies.comment(gh, trigger, text), "refusal reply")
            return Outcome.REFUSED
        if command.kind in (Kind.REQUEST, Kind.EXEC):
            await self.enqueue(gh, trigger, command, delivery_id)
            return Outcome.QUEUED
        return await self.subcommand(gh, config, trigger, command, delivery_id)

    async def enqueue(
        self, gh: GitHubAPI, trigger: Trigger, command: Command, delivery_id: str
    ) -> Task:
        """Store the task, queue it, and mark the comment with 👀."""
        head_ref, head_sha = trigger.head_ref, trigger.head_sha
        if trigger.is_pull_request and head_sha is None:
            head_ref, head_sha = await replies.pull_head(gh, trigger)
        stored = new_task(trigger, command, head_ref, head_sha)
        task = await self.store.add_task(stored, delivery_id)
        await self.queue.put(task.id)
        self.background.spawn(replies.react(gh, trigger, "eyes"), "👀 reaction")
        return task

    async def reset_cache(self, repo: str) -> str:
        """`reset-cache`: drop the repository's cached environments, if this server has any."""
        if self.on_reset_cache is None:
            return replies.NO_CACHE_TEXT
        return replies.cache_reset(repo, await self.on_reset_cache(repo))

    async def subcommand(
        self,
        gh: GitHubAPI,
        config: TriggersConfig,
        trigger: Trigger,
        command: Command,
        delivery_id: str,
    ) -> Outcome:
        """help, status, cancel, retry, reset-cache."""
        latest = await self.store.latest_for_thread(trigger.repo, trigger.number)
        if command.kind is Kind.RETRY and latest is not None:
            retried = Command(Kind(latest.kind), latest.request)
            task = await self.enqueue(gh, trigger, retried, delivery_id)
            text = replies.retried(latest, task)
        elif command.kind is Kind.CANCEL and latest is not None and latest.state in ACTIVE_STATES:
            await self.store.set_state(latest.id, TaskState.CANCELLED)
            if self.on_cancel is not None:
                self.on_cancel(latest.id)
            text = replies.cancelled(latest)
        elif command.kind in (Kind.STATUS, Kind.CANCEL, Kind.RETRY):
            text = replies.status(latest)
        elif command.kind is Kind.RESET_CACHE:
            text = await self.reset_cache(trigger.repo)
        else:
            text = help_text(self.handle, config.min_permission)
        self.background.spawn(replies.comment(gh, trigger, text), f"{command.kind} reply")
        return Outcome.ANSWERED


def new_task(
    trigger: Trigger, command: Command, head_ref: str | None, head_sha: str | None
) -> NewTask:
    """The stored form of an accepted request."""
    return NewTask(
        repo=trigger.repo,
        installation_id=trigger.installation_id,
        number=trigger.number,
        is_pull_request=trigger.is_pull_request,
        title=trigger.title,
        clone_url=trigger.clone_url,
        default_branch=trigger.default_branch,
        comment_id=trigger.comment_id,
        comment_kind=trigger.comment_kind,
        requester=trigger.author,
        kind=command.kind.value,
        request=command.text,
        head_ref=head_ref,
        head_sha=head_sha,
        thread_body=trigger.thread_body,
    )
