"""What Gantry says and how it reacts on GitHub: texts are pure, the calls are thin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.triggers import Trigger
from runner.task import Task, TaskState

REACTION_PATHS = {
    "issue_comment": "/repos/{+repo}/issues/comments/{id}/reactions",
    "review_comment": "/repos/{+repo}/pulls/comments/{id}/reactions",
    "issue": "/repos/{+repo}/issues/{id}/reactions",
}
# A reply in a review comment's thread, and its edits (the reply is a review comment):
# https://docs.github.com/en/rest/pulls/comments#create-a-reply-for-a-review-comment
THREAD_REPLY_PATH = "/repos/{+repo}/pulls/{number}/comments/{id}/replies"
ISSUE_COMMENT_PATH = "/repos/{+repo}/issues/{number}/comments"
EDIT_PATHS = {
    "issue": "/repos/{+repo}/issues/comments/{id}",
    "review": "/repos/{+repo}/pulls/comments/{id}",
}
log = logging.getLogger(__name__)
NO_CACHE_TEXT = "This server does not cache environments: every task starts from scratch."


def cache_reset(repo: str, dropped: int) -> str:
    return (
        f"Dropped {dropped} cached environment(s) of {repo}; "
        "the next task runs the setup script again."
    )


def cache_reset_requested(repo: str, seconds: float) -> str:
    return (
        f"Asked every worker to drop the cached environments of {repo} (each does within "
        f"{seconds:.0f} s); the next task runs the setup script again."
    )


def refusal(login: str, min_permission: str) -> str:
    return (
        f"Sorry @{login}, only people with {min_permission} access to this repository can "
        "ask me for work. A maintainer can ask on your behalf."
    )


def status(task: Task | None) -> str:
    if task is None:
        return "There is no task on this thread yet."
    return f"Task #{task.id} ({task.kind}, requested by @{task.requester}) is **{task.state}**."


def cancelled(task: Task, running: bool = False) -> str:
    """The reply to a cancel the store took. A queued task never runs; a running one is
    stopped by its worker within seconds, unless it ends first (publishing, say): the reply
    cannot know yet, the task's own progress comment says how it ended."""
    if running:
        return (
            f"Stopping task #{task.id}. Its progress comment says how it ends: work it had "
            "already published stays."
        )
    return f"Cancelled task #{task.id}."


def already_ended(task: Task) -> str:
    """The reply to a cancel that came once the task was over (perhaps just before it)."""
    if task.state is TaskState.CANCELLED:
        return f"Task #{task.id} was cancelled already."
    return f"Task #{task.id} had already finished (**{task.state}**): there was nothing to cancel."


def retried(previous: Task, task: Task) -> str:
    return f"Queued task #{task.id}, a retry of task #{previous.id}."


def in_thread(trigger: Trigger) -> bool:
    """Whether Gantry answers in a review comment's thread rather than on the conversation."""
    return trigger.comment_kind == "review_comment" and trigger.thread_id is not None


async def comment(gh: GitHubAPI, trigger: Trigger, body: str) -> None:
    """A new comment where the request was made."""
    await post(gh, trigger, body)


@dataclass(frozen=True)
class Posted:
    """A comment Gantry posted: its id, and whether it is a review comment (a thread reply)."""

    id: int
    review: bool
    url: str = ""


async def post(gh: GitHubAPI, trigger: Trigger, body: str) -> Posted:
    """A new comment where the request was made: in a review comment's thread, or else on
    the issue or pull request."""
    where: dict[str, str | int | None] = {
        "repo": trigger.repo,
        "number": trigger.number,
        "id": trigger.thread_id,
    }
    if in_thread(trigger):
        try:
            answer = await gh.post(THREAD_REPLY_PATH, where, data={"body": body})
            return Posted(int(answer["id"]), True, str(answer.get("html_url", "")))
        except gidgethub.BadRequest as exc:
            if exc.status_code != HTTPStatus.NOT_FOUND:
                raise
            # The review comment was deleted before the answer: say it on the conversation.
    answer = await gh.post(ISSUE_COMMENT_PATH, where, data={"body": body})
    return Posted(int(answer["id"]), False, str(answer.get("html_url", "")))


async def edit(gh: GitHubAPI, repo: str, posted: Posted, body: str) -> None:
    """Edit a comment that `post` posted."""
    path = EDIT_PATHS["review" if posted.review else "issue"]
    await gh.patch(path, {"repo": repo, "id": posted.id}, data={"body": body})


async def react(gh: GitHubAPI, trigger: Trigger, content: str) -> None:
    """A reaction on the triggering comment (reviews cannot carry reactions)."""
    path = REACTION_PATHS.get(trigger.comment_kind)
    if path is None:
        return
    target = trigger.comment_id if trigger.comment_kind != "issue" else trigger.number
    if target is None:
        return
    try:
        await gh.post(path, {"repo": trigger.repo, "id": target}, data={"content": content})
    except gidgethub.BadRequest as exc:
        if not is_gone(exc):
            raise
        # Deleted since it was written: nothing to mark, and no retry will change that.
        log.info("no %s reaction on %s: %s", content, trigger.repo, exc)


def is_gone(exc: gidgethub.BadRequest) -> bool:
    """Whether GitHub says the thing to comment on or react to no longer exists."""
    return exc.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE)


async def pull_head(gh: GitHubAPI, trigger: Trigger) -> tuple[str, str]:
    """The head branch and SHA of the pull request a comment is on."""
    pull = await gh.getitem(
        "/repos/{+repo}/pulls/{number}", {"repo": trigger.repo, "number": trigger.number}
    )
    return pull["head"]["ref"], pull["head"]["sha"]
