"""What Gantry says and how it reacts on GitHub: texts are pure, the calls are thin."""

from __future__ import annotations

from gidgethub.abc import GitHubAPI

from bot.triggers import Trigger
from runner.store import Task

REACTION_PATHS = {
    "issue_comment": "/repos/{+repo}/issues/comments/{id}/reactions",
    "review_comment": "/repos/{+repo}/pulls/comments/{id}/reactions",
    "issue": "/repos/{+repo}/issues/{id}/reactions",
}
NO_CACHE_TEXT = "This server does not cache environments: every task starts from scratch."


def cache_reset(repo: str, dropped: int) -> str:
    return (
        f"Dropped {dropped} cached environment(s) of {repo}; "
        "the next task runs the setup script again."
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


def cancelled(task: Task) -> str:
    return f"Cancelled task #{task.id}."


def retried(previous: Task, task: Task) -> str:
    return f"Queued task #{task.id}, a retry of task #{previous.id}."


async def comment(gh: GitHubAPI, trigger: Trigger, body: str) -> None:
    """A new comment on the issue or pull request."""
    await gh.post(
        "/repos/{+repo}/issues/{number}/comments",
        {"repo": trigger.repo, "number": trigger.number},
        data={"body": body},
    )


async def react(gh: GitHubAPI, trigger: Trigger, content: str) -> None:
    """A reaction on the triggering comment (reviews cannot carry reactions)."""
    path = REACTION_PATHS.get(trigger.comment_kind)
    if path is None:
        return
    target = trigger.comment_id if trigger.comment_kind != "issue" else trigger.number
    if target is None:
        return
    await gh.post(path, {"repo": trigger.repo, "id": target}, data={"content": content})


async def pull_head(gh: GitHubAPI, trigger: Trigger) -> tuple[str, str]:
    """The head branch and SHA of the pull request a comment is on."""
    pull = await gh.getitem(
        "/repos/{+repo}/pulls/{number}", {"repo": trigger.repo, "number": trigger.number}
    )
    return pull["head"]["ref"], pull["head"]["sha"]
