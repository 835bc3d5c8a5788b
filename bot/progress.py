"""Progress where people look: one comment edited in place, check runs, a final reaction."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from bot import replies
from bot.github_client import UncertainWriteError
from bot.reports import (
    check_run_conclusion,
    check_run_output,
    final_comment,
    progress_comment,
    started_run_end,
)
from bot.triggers import Trigger
from runner.modes import Mode, mode_of
from runner.results import Conclusion, Phase, TaskResult, initial_phases
from runner.task import Task

log = logging.getLogger(__name__)
CHECK_NAME = "Gantry"
# GitHub or the network failing while we report: logged, and the task goes on.
REPORTING_ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, UncertainWriteError)
PULL_NUMBER = re.compile(r"/pull/(\d+)/?$")


def trigger_of(task: Task) -> Trigger:
    """Enough of the original trigger to react to its comment and reply on its thread."""
    return Trigger(
        event="task",
        repo=task.repo,
        installation_id=task.installation_id,
        clone_url=task.clone_url,
        default_branch=task.default_branch,
        number=task.number,
        is_pull_request=task.is_pull_request,
        title=task.title,
        comment_id=task.comment_id,
        comment_kind=task.comment_kind,
        author=task.requester,
        author_type="User",
        body=task.request,
        head_ref=task.head_ref,
        head_sha=task.head_sha,
        thread_body=task.thread_body,
        context=task.context,
    )


@dataclass
class GitHubReporter:
    """Carries the pipeline's progress to GitHub; reporting never fails the task itself."""

    gh: GitHubAPI
    task: Task
    task_url: str | None = None
    # The signed link to the repository's task list, shown next to the task's own.
    repo_url: str | None = None
    phases: list[Phase] = field(default_factory=initial_phases)
    comment_id: int | None = None
    # The progress comment: on the conversation, or a reply in a review comment's thread.
    comment: replies.Posted | None = None
    check_run_id: int | None = None
    # Where the task starts on a pull request (its head when the task starts, read once and
    # shared with the pipeline); None: the head the request was made on.
    start_head: Callable[[], Awaitable[str]] | None = None
    _flusher: asyncio.Task[None] | None = None
    _shown: str = ""

    @property
    def _repo(self) -> dict[str, str]:
        return {"repo": self.task.repo}

    async def started(self) -> None:
        """Post the progress comment; on a pull request, open a check run on its head."""
        await self._quietly(self._start())

    async def _start(self) -> None:
        body = self._progress()
        # In a review comment's thread when the request was made there.
        self.comment = await replies.post(self.gh, trigger_of(self.task), body)
        self.comment_id = self.comment.id
        # A check run judges a commit: only a code task has one to judge (the head it starts
        # from, then its own); ask, plan and review push nothing.
        code = mode_of(self.task.kind) is Mode.CODE
        if not (self.task.is_pull_request and code):
            return
        head = await self.start_head() if self.start_head is not None else self.task.head_sha
        if head:
            run = await self.gh.post(
                "/repos/{+repo}/check-runs",
                self._repo,
                data=self._check_run(head, {"status": "in_progress"}),
            )
            self.check_run_id = int(run["id"])

    def _progress(self) -> str:
        return progress_comment(self.task.id, self.phases, self.task_url, repo_url=self.repo_url)

    async def phase(self, phase: Phase) -> None:
        """A phase moved: edit the comment in place, without holding the pipeline up.

        Edits go out one at a time in the background; a burst of phase changes becomes one
        edit with the latest state."""
        self.phases = [phase if p.name == phase.name else p for p in self.phases]
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while True:
            body = self._progress()
            if body == self._shown:
                return
            self._shown = body
            await self._edit(body)

    async def settle(self) -> None:
        """Wait until the comment shows the latest phase."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def finished(self, result: TaskResult) -> None:
        """The final comment (on a pull request, with the round's results), the check runs'
        conclusions, and 🚀 or 😕."""
        await self.settle()
        body = final_comment(
            self.task.id,
            self.phases,
            result,
            self.task_url,
            round_results=self.task.is_pull_request,
            repo_url=self.repo_url,
        )
        await self._edit(body)
        await self._conclude(result)
        done = result.conclusion in (Conclusion.PUBLISHED, Conclusion.ANSWERED)
        content = "rocket" if done else "confused"
        if result.conclusion is not Conclusion.CANCELLED:
            await self._quietly(replies.react(self.gh, trigger_of(self.task), content))

    async def _conclude(self, result: TaskResult) -> None:
        """A finished check run on the commit Gantry pushed; the run on the head the task
        started from concludes with what the task says of that commit."""
        pushed = await self._pushed(result)
        if pushed is not None:
            data = {"status": "completed", "conclusion": check_run_conclusion(result.checks)}
            await self._quietly(
                self.gh.post(
                    "/repos/{+repo}/check-runs",
                    self._repo,
                    data=self._check_run(pushed, data | {"output": self._output(result)}),
                )
            )
        if self.check_run_id is not None:
            await self._quietly(
                self.gh.patch(
                    "/repos/{+repo}/check-runs/{id}",
                    {**self._repo, "id": self.check_run_id},
                    data=started_run_end(result, pushed, self.task_url),
                )
            )

    def _output(self, result: TaskResult) -> dict[str, str]:
        return check_run_output(result, self.task_url)

    def _check_run(self, head_sha: str, fields: dict[str, object]) -> dict[str, object]:
        """A check run request named Gantry, linked to the task page when there is one."""
        data: dict[str, object] = {"name": CHECK_NAME, "head_sha": head_sha, **fields}
        if self.task_url:
            data["details_url"] = self.task_url
        return data

    async def _pushed(self, result: TaskResult) -> str | None:
        """The commit Gantry pushed: as the publisher handed it back, or else the head of
        the pull request it published, read right after the push."""
        if result.conclusion is not Conclusion.PUBLISHED:
            return None
        if result.head_sha is not None:
            return result.head_sha
        match = PULL_NUMBER.search(result.pull_url or "")
        if match is None:
            return None
        try:
            pull = await self.gh.getitem(
                "/repos/{+repo}/pulls/{number}", {**self._repo, "number": int(match[1])}
            )
        except REPORTING_ERRORS as exc:
            log.warning("task %s: the pushed commit is unknown: %s", self.task.id, exc)
            return None
        return str(pull["head"]["sha"])

    async def _edit(self, body: str) -> None:
        if self.comment is None:
            return
        await self._quietly(replies.edit(self.gh, self.task.repo, self.comment, body))

    async def _quietly(self, call: Awaitable[object]) -> None:
        """A failed progress update is logged, never fatal: the work matters more."""
        try:
            await call
        except REPORTING_ERRORS as exc:
            log.warning("task %s: progress update failed: %s", self.task.id, exc)
