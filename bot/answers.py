"""Posting what ask, plan and review produce: a comment, a plan comment, one PR review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from bot import replies
from bot.plans import plan_comment
from bot.progress import trigger_of
from bot.reports import clip, inert, quiet_mentions
from bot.review_diff import diff_lines, place, review_body, review_request, seen, unsaid
from config.repo_config import RepoConfig
from runner.modes import Answer, Finding, Mode, at_least
from runner.task import Task

FILES_URL = "/repos/{+repo}/pulls/{number}/files{?per_page}"
REVIEWS_URL = "/repos/{+repo}/pulls/{number}/reviews{?per_page}"
REVIEW_URL = "/repos/{+repo}/pulls/{number}/reviews"
REVIEW_COMMENTS_URL = "/repos/{+repo}/pulls/{number}/comments{?per_page}"
ASK_TEXT = "@{requester} asked:\n\n{question}\n\n{answer}"


@dataclass
class GitHubAnswers:
    """Posts a task's answer where it was asked, as the App (`handle`)."""

    gh: GitHubAPI
    task: Task
    handle: str

    @property
    def _where(self) -> dict[str, Any]:
        return {"repo": self.task.repo, "number": self.task.number, "per_page": 100}

    async def post(self, answer: Answer, config: RepoConfig) -> str:
        """The comment or review, posted in one request; its URL."""
        if answer.mode is Mode.REVIEW:
            return await self.review(answer, config)
        at = self.at(answer)
        if answer.mode is Mode.PLAN:
            # Cut to fit by plan_comment itself, which keeps the marker `go` looks for.
            text = inert(answer.text) + (f"\n\n_Planned on {at}._" if at else "")
            body = plan_comment(text, self.task.id, self.handle)
        else:
            body = clip(ask_comment(self.task, answer.text, at))
        posted = await replies.post(self.gh, trigger_of(self.task), body)
        return posted.url

    async def review(self, answer: Answer, config: RepoConfig) -> str:
        """One review: new findings on diff lines inline, the others in its body; nothing
        Gantry said on an earlier review of this pull request again."""
        wanted = at_least(answer.findings, config.review.min_severity)
        files = [entry async for entry in self.gh.getiter(FILES_URL, self._where)]
        said = seen(await self.earlier_bodies())
        placed = place(unsaid(wanted, said), diff_lines(files))
        fresh = len(placed.inline) + len(placed.outside)
        repeated = len(wanted) - fresh
        hidden = len(answer.findings) - len(wanted)
        at = self.at(answer)
        counts = (repeated, hidden, self.label + (f", reviewed at {at}" if at else ""))
        commit = answer.sha or self.task.head_sha
        try:
            return await self.submit(commit, placed.inline, placed.outside, *counts)
        except gidgethub.BadRequest as exc:
            if exc.status_code != HTTPStatus.UNPROCESSABLE_ENTITY or not placed.inline:
                raise
            # The pull request moved on since the agent read it and GitHub no longer places a
            # line: the same review, every finding in its body (one review, never half).
            return await self.submit(commit, (), placed.inline + placed.outside, *counts)

    async def submit(
        self,
        commit: str | None,
        inline: Sequence[Finding],
        outside: Sequence[Finding],
        repeated: int,
        hidden: int,
        label: str,
    ) -> str:
        body = review_body(outside, len(inline), repeated, hidden, label)
        data = review_request(commit, inline, body)
        review = await self.gh.post(REVIEW_URL, self._where, data=data)
        return str(review["html_url"])

    def at(self, answer: Answer) -> str:
        """`abc1234`, the pull request's head the answer is about (nothing on an issue)."""
        return f"`{answer.sha[:7]}`" if self.task.is_pull_request and answer.sha else ""

    @property
    def label(self) -> str:
        return f"task #{self.task.id}, asked by @{self.task.requester}"

    async def earlier_bodies(self) -> list[str]:
        """The bodies of the App's review comments and reviews on this pull request."""
        bot = f"{self.handle}[bot]".lower()
        bodies = []
        for url in (REVIEW_COMMENTS_URL, REVIEWS_URL):
            async for item in self.gh.getiter(url, self._where):
                if str((item.get("user") or {}).get("login", "")).lower() == bot:
                    bodies.append(str(item.get("body") or ""))
        return bodies


def ask_comment(task: Task, answer: str, at: str = "") -> str:
    """The answer under the question it answers, mentions quieted; `at`: the commit it is
    about, on a pull request."""
    question = "\n".join(f"> {line}" for line in quiet_mentions(task.request).splitlines())
    text = ASK_TEXT.format(
        requester=task.requester, question=question or "> (no text)", answer=inert(answer)
    )
    return text + (f"\n\n_Answered on {at}._" if at else "")
