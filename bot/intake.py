"""From a trigger to a stored, queued task: the permission gate and the subcommands."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from bot import effects, replies
from bot.background import Background
from bot.branches import BranchNameError, check_ref_format
from bot.commands import TASK_KINDS, Command, Kind, help_text, parse_command
from bot.permissions import PermissionCache, reaches
from bot.plans import go_command
from bot.pull_requests import PullHead, fetch_head
from bot.repo_triggers import TriggerCache
from bot.triggers import Trigger, is_from_a_bot
from config.agent_choice import AgentNotAllowedError, choose_agent
from config.errors import GantryError
from config.hidden_text import strip_hidden
from config.repo_config import TriggersConfig
from config.settings import Settings
from runner.modes import Mode, mode_of
from runner.queue import TaskQueue
from runner.store import TaskStore
from runner.task import NewTask, Task, TaskState

# Ids and numbers are stored as SQLite integers (64-bit); GitHub's are far smaller.
MAX_ID = 2**63 - 1
FORK_TEXT = (
    "Sorry @{login}, I don't run tasks on pull requests from forks: the fork's code would run "
    "in this repository's environment. Push the branch to {repo} itself and open the pull "
    "request from there (or ask a maintainer to), then mention me on it."
)
NO_TASK = "No task was started."
BRANCH_ON_PULL_TEXT = (
    "Sorry @{login}, `on <branch>:` is for issues: on a pull request I work from its own "
    "branch. " + NO_TASK
)
BAD_BRANCH_TEXT = "Sorry @{login}, `{branch}` is not a valid branch name. " + NO_TASK
ATTEMPTS_TEXT = (
    "Sorry @{login}, `--attempts` takes a whole number from 1 up (`--attempts 3`). " + NO_TASK
)
ATTEMPTS_MODE_TEXT = (
    "Sorry @{login}, `--attempts` is for code changes: `{kind}` runs once and pushes nothing, "
    "so there is no attempt to pick. Ask again without it. " + NO_TASK
)
NO_BRANCH_TEXT = "Sorry @{login}, {repo} has no branch `{branch}`. " + NO_TASK
REVIEW_ON_ISSUE_TEXT = "Sorry @{login}, `review` is for pull requests. " + NO_TASK


class AbsurdPayloadError(GantryError, ValueError):
    """A signed payload whose values no real delivery has (the webhook answers 400)."""


def check_trigger(trigger: Trigger) -> None:
    """Refuse numbers and ids out of any real range before anything stores or sends them."""
    for name in ("number", "installation_id", "comment_id"):
        value = getattr(trigger, name)
        if value is not None and not 0 < value <= MAX_ID:
            raise AbsurdPayloadError(f"{name} out of range")


def fork_refusal(trigger: Trigger) -> str:
    """The reply to a request on a fork's pull request: why not, and what to do instead."""
    return FORK_TEXT.format(login=trigger.author, repo=trigger.repo)


class Outcome(StrEnum):
    """What a delivery led to; the webhook's answer names it."""

    IGNORED = "ignored"
    REFUSED = "refused"
    QUEUED = "queued"
    ANSWERED = "answered"


@dataclass
class Intake:
    """The deps of the intake: store, queue, GitHub clients, the bot's identity, and how to
    reach this process's workers (stop a task now; drop a repository's cached environments)."""

    store: TaskStore
    queue: TaskQueue
    github: Callable[[int], GitHubAPI]
    handle: str
    background: Background
    permissions: PermissionCache
    triggers: TriggerCache
    on_cancel: Callable[[int], bool]
    # Drops a repository's cached environments (here, or asks every worker); the reply.
    on_reset_cache: Callable[[str], Awaitable[str]] | None
    # The server's settings: defaults and ceilings for the configs it reads (config check).
    settings: Settings | None = None

    @property
    def bot_login(self) -> str:
        return f"{self.handle}[bot]"

    async def on_comment(
        self, trigger: Trigger, delivery_id: str, head: PullHead | None = None
    ) -> Outcome:
        """A comment or review body: act if it mentions the handle and mentions are on.

        `head` is the pull request's head when the payload carries it (reviews do)."""
        check_trigger(trigger)
        if is_from_a_bot(trigger, self.handle):
            return Outcome.IGNORED
        command = parse_command(trigger.body, self.handle)
        if command is None:
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        if not config.mention:
            return Outcome.IGNORED
        return await self.on_command(gh, config, trigger, command, delivery_id, head)

    async def on_assigned(self, trigger: Trigger, assignee: str, delivery_id: str) -> Outcome:
        """An issue assigned to the App's bot user, when the repository allows it."""
        check_trigger(trigger)
        if assignee.lower() != self.bot_login.lower() or is_from_a_bot(trigger, self.handle):
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        if not config.assign:
            return Outcome.IGNORED
        return await self.on_issue(gh, config, trigger, delivery_id)

    async def on_labeled(self, trigger: Trigger, label: str, delivery_id: str) -> Outcome:
        """An issue given the repository's trigger label."""
        check_trigger(trigger)
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
        command = Command(Kind.REQUEST, strip_hidden(trigger.body))
        return await self.on_command(gh, config, trigger, command, delivery_id)

    async def on_command(
        self,
        gh: GitHubAPI,
        config: TriggersConfig,
        trigger: Trigger,
        command: Command,
        delivery_id: str,
        head: PullHead | None = None,
    ) -> Outcome:
        """Check the requester's permission, then carry the command out."""
        level = await self.permissions.level(gh, trigger.repo, trigger.author)
        if not reaches(level, config.min_permission):
            if await self.store.first_refusal(trigger.repo, trigger.number, delivery_id):
                text = replies.refusal(trigger.author, config.min_permission)
                await self.reply(gh, trigger, delivery_id, text)
            return Outcome.REFUSED
        if command.kind in TASK_KINDS:
            mode_command = await self.thread_command(gh, trigger, command)
            if isinstance(mode_command, str):
                await self.reply(gh, trigger, delivery_id, mode_command)
                return Outcome.REFUSED
            command = mode_command
            refused = attempts_refusal(trigger, command)
            refused = refused or await self.agent_refusal(gh, trigger, command)
            refused = refused or await self.branch_refusal(gh, trigger, command)
            if refused is not None:
                await self.reply(gh, trigger, delivery_id, refused)
                return Outcome.REFUSED
            task = await self.enqueue(gh, trigger, command, delivery_id, head)
            return Outcome.QUEUED if task is not None else Outcome.REFUSED
        return await self.subcommand(gh, config, trigger, command, delivery_id)

    async def thread_command(
        self, gh: GitHubAPI, trigger: Trigger, command: Command
    ) -> Command | str:
        """The command as this thread takes it (`go`: the plan's code task; `review <text>` on
        an issue: an ordinary request), or the reply refusing it."""
        if command.kind is Kind.REVIEW and not trigger.is_pull_request:
            if not command.text:
                return REVIEW_ON_ISSUE_TEXT.format(login=trigger.author)
            text = f"review {command.text}"
            return dataclasses.replace(command, kind=Kind.REQUEST, text=text)
        if command.kind is Kind.GO:
            tasks = await self.store.thread_tasks(trigger.repo, trigger.number)
            return await go_command(gh, tasks, trigger, command, self.handle)
        return command

    async def on_auto_review(self, trigger: Trigger, head: PullHead, delivery_id: str) -> Outcome:
        """A pull request opened or marked ready: reviewed when the repository asks for it,
        the author may start tasks and the code is not a fork's (no reply either way)."""
        check_trigger(trigger)
        if is_from_a_bot(trigger, self.handle) or head.fork:
            return Outcome.IGNORED
        gh = self.github(trigger.installation_id)
        if not (await self.triggers.review(gh, trigger.repo, trigger.default_branch)).auto:
            return Outcome.IGNORED
        config = await self.triggers.get(gh, trigger.repo, trigger.default_branch)
        level = await self.permissions.level(gh, trigger.repo, trigger.author)
        if not reaches(level, config.min_permission):
            return Outcome.REFUSED
        task = await self.enqueue(gh, trigger, Command(Kind.REVIEW), delivery_id, head)
        return Outcome.QUEUED if task is not None else Outcome.REFUSED

    async def agent_refusal(self, gh: GitHubAPI, trigger: Trigger, command: Command) -> str | None:
        """The reply to an agent or model pick the repository does not allow (None: allowed)."""
        if command.agent is None and command.model is None:
            return None
        agent = await self.triggers.agent(gh, trigger.repo, trigger.default_branch)
        try:
            choose_agent(agent, command.agent, command.model)
        except AgentNotAllowedError as exc:
            return f"Sorry @{trigger.author}, {exc}. No task was started."
        return None

    async def branch_refusal(self, gh: GitHubAPI, trigger: Trigger, command: Command) -> str | None:
        """The reply to `on <branch>:` naming no branch of the repository (None: it exists)."""
        branch = command.branch
        if branch is None:
            return None
        if trigger.is_pull_request:
            return BRANCH_ON_PULL_TEXT.format(login=trigger.author)
        try:
            await check_ref_format(branch)
        except BranchNameError:
            return BAD_BRANCH_TEXT.format(login=trigger.author, branch=branch)
        if not await branch_exists(gh, trigger.repo, branch):
            return NO_BRANCH_TEXT.format(login=trigger.author, repo=trigger.repo, branch=branch)
        return None

    async def enqueue(
        self,
        gh: GitHubAPI,
        trigger: Trigger,
        command: Command,
        delivery_id: str,
        head: PullHead | None = None,
    ) -> Task | None:
        """Store the task, queue it, and mark the comment with 👀; a fork's PR gets a reply."""
        if trigger.is_pull_request and head is None:
            # An issue comment's payload does not say where the pull request's head lives.
            head = await fetch_head(gh, trigger.repo, trigger.number)
        if head is not None and head.fork:
            await self.reply(gh, trigger, delivery_id, fork_refusal(trigger))
            return None
        task = await self.store.task_for_delivery(delivery_id)
        if task is None:  # a retried delivery that already made its task makes no second
            task = await self.store.add_task(new_task(trigger, command, head), delivery_id)
            await self.queue.put(task.id)
        # Adding a reaction that is there already changes nothing: a retry may repeat it.
        await replies.react(gh, trigger, "eyes")
        return task

    async def reply(self, gh: GitHubAPI, trigger: Trigger, delivery_id: str, text: str) -> None:
        """The delivery's reply, posted once however often the inbox tries the delivery."""
        await effects.reply_once(self.store, gh, trigger, delivery_id, text, self.bot_login)

    async def latest_before(self, trigger: Trigger, delivery_id: str) -> Task | None:
        """The thread's latest task, other than one this delivery made on an earlier try."""
        latest = await self.store.latest_for_thread(trigger.repo, trigger.number)
        if latest is None or latest.delivery_id != delivery_id:
            return latest
        tasks = await self.store.thread_tasks(trigger.repo, trigger.number)
        return next((t for t in reversed(tasks) if t.delivery_id != delivery_id), None)

    async def reset_cache(self, repo: str) -> str:
        """`reset-cache`: drop the repository's cached environments, if this server has any."""
        if self.on_reset_cache is None:
            return replies.NO_CACHE_TEXT
        return await self.on_reset_cache(repo)

    async def cancel(self, latest: Task) -> str:
        """`cancel`: stop the task if it is still queued or running; the reply. The store
        decides, in one write: a task that ended after `latest` was read keeps its end."""
        cancelled = await self.store.cancel_task(latest.id)
        if cancelled is not None:
            self.on_cancel(cancelled.id)
            return replies.cancelled(cancelled, running=latest.state is TaskState.RUNNING)
        return replies.already_ended(await self.store.get(latest.id) or latest)

    async def subcommand(
        self,
        gh: GitHubAPI,
        config: TriggersConfig,
        trigger: Trigger,
        command: Command,
        delivery_id: str,
    ) -> Outcome:
        """help, status, cancel, retry, reset-cache."""
        latest = await self.latest_before(trigger, delivery_id)
        if command.kind is Kind.RETRY and latest is not None:
            branch = None if latest.is_pull_request else latest.head_ref
            retried = Command(
                Kind(latest.kind), latest.request, latest.agent, latest.model, branch,
                latest.best_of,
            )  # fmt: skip
            task = await self.enqueue(gh, trigger, retried, delivery_id)
            if task is None:
                return Outcome.REFUSED
            text = replies.retried(latest, task)
        elif command.kind is Kind.CANCEL and latest is not None:
            text = await self.cancel(latest)
        elif command.kind in (Kind.STATUS, Kind.CANCEL, Kind.RETRY):
            text = replies.status(latest)
        elif command.kind is Kind.RESET_CACHE:
            text = await self.reset_cache(trigger.repo)
        else:
            text = help_text(self.handle, config.min_permission)
        await self.reply(gh, trigger, delivery_id, text)
        return Outcome.ANSWERED


def attempts_refusal(trigger: Trigger, command: Command) -> str | None:
    """The reply to `--attempts` given no positive number, or more than one for a mode that
    changes no code (None: fine or not given)."""
    if command.attempts is None or command.attempts == 1:
        return None
    if command.attempts == 0:
        return ATTEMPTS_TEXT.format(login=trigger.author)
    if mode_of(command.kind.value) is not Mode.CODE:
        return ATTEMPTS_MODE_TEXT.format(login=trigger.author, kind=command.kind.value)
    return None


async def branch_exists(gh: GitHubAPI, repo: str, branch: str) -> bool:
    """Whether `repo` has `branch` (`GET /repos/{owner}/{repo}/branches/{branch}`)."""
    try:
        await gh.getitem(f"/repos/{repo}/branches/{quote(branch, safe='')}")
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
        return False
    return True


def new_task(trigger: Trigger, command: Command, head: PullHead | None) -> NewTask:
    """The stored form of an accepted request; what the agent reads has no hidden text.

    On an issue, `head_ref` is the branch the requester named (None: the default branch)."""
    return NewTask(
        repo=trigger.repo,
        installation_id=trigger.installation_id,
        number=trigger.number,
        is_pull_request=trigger.is_pull_request,
        title=strip_hidden(trigger.title),
        clone_url=trigger.clone_url,
        default_branch=trigger.default_branch,
        comment_id=trigger.comment_id,
        comment_kind=trigger.comment_kind,
        requester=trigger.author,
        kind=command.kind.value,
        request=strip_hidden(command.text),
        head_ref=head.ref if head is not None else command.branch,
        head_sha=head.sha if head is not None else None,
        thread_body=strip_hidden(trigger.thread_body),
        agent=command.agent,
        model=command.model,
        context=trigger.context,
        best_of=command.attempts or 1,
    )
