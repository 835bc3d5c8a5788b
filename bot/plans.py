"""`@gantry plan` and `@gantry go`: the plan comment, and the code task that carries it out.

The plan comment ends with a hidden marker naming its task. `go` reads the thread's latest
plan comment as it is *now* (a writer may have edited it) and attaches it to the request."""

from __future__ import annotations

import re

from gidgethub.abc import GitHubAPI

from bot.commands import Command, Kind
from bot.reports import MAX_BODY_CHARS, clip
from bot.triggers import Trigger
from runner.task import Task, TaskState

MARKER = "<!-- gantry:plan task={id} -->"
MARKER_RE = re.compile(r"<!-- gantry:plan task=(\d+) -->")
FOOTER = (
    "Comment `@{handle} go` to carry this plan out; edit this comment first to change the plan."
)
FOOTER_RE = re.compile(r"\n*---\nComment `@[\w-]+ go` to carry this plan out;[^\n]*\s*$")
NO_PLAN_TEXT = (
    "Sorry @{login}, I found no plan on this thread to carry out. Ask for one with "
    "`@{handle} plan <request>` first."
)
GO_REQUEST = "{request}\n\nCarry out this plan, agreed on the thread:\n\n{plan}"
COMMENTS_URL = "/repos/{+repo}/issues/{number}/comments{?per_page}"


def plan_comment(plan: str, task_id: int, handle: str, limit: int = MAX_BODY_CHARS) -> str:
    """The plan as posted: the agent's text, how to go on, and the marker `go` looks for.

    A plan too long for a comment is cut, never the footer and marker after it: without the
    marker `go` finds no plan. Quiet the plan's mentions before: that lengthens it."""
    footer = FOOTER.format(handle=handle)
    tail = f"\n\n---\n{footer}\n\n{MARKER.format(id=task_id)}"
    return clip(plan.strip(), limit - len(tail)) + tail


def plan_text(body: str) -> str:
    """A plan comment's plan: its body without the marker and the footer."""
    return FOOTER_RE.sub("", MARKER_RE.sub("", body).rstrip()).strip()


def go_request(request: str, plan: str) -> str:
    """The code task's request: what was asked, and the plan to follow."""
    return GO_REQUEST.format(request=request.strip(), plan=plan.strip())


def latest_plan_task(tasks: list[Task]) -> Task | None:
    """The newest plan task on the thread that posted its plan."""
    done = [t for t in tasks if t.kind == Kind.PLAN.value and t.state is TaskState.SUCCEEDED]
    return done[-1] if done else None


async def plan_body(gh: GitHubAPI, repo: str, number: int, task_id: int, bot: str) -> str | None:
    """The current body of the App's plan comment for `task_id` on the thread, if any."""
    found = None
    url_vars = {"repo": repo, "number": str(number), "per_page": "100"}
    async for comment in gh.getiter(COMMENTS_URL, url_vars):
        user = str((comment.get("user") or {}).get("login", "")).lower()
        match = MARKER_RE.search(str(comment.get("body") or ""))
        if user == bot.lower() and match and int(match[1]) == task_id:
            found = str(comment["body"])
    return found


async def go_command(
    gh: GitHubAPI, tasks: list[Task], trigger: Trigger, command: Command, handle: str
) -> Command | str:
    """`go` as the code request it stands for, or the reply saying there is no plan."""
    task = latest_plan_task(tasks)
    body = None
    if task is not None:
        body = await plan_body(gh, trigger.repo, trigger.number, task.id, f"{handle}[bot]")
    if task is None or body is None or not plan_text(body):
        return NO_PLAN_TEXT.format(login=trigger.author, handle=handle)
    request = go_request(task.request, plan_text(body))
    branch = None if task.is_pull_request else task.head_ref
    agent, model = command.agent or task.agent, command.model or task.model
    return Command(Kind.REQUEST, request, agent, model, branch, command.attempts)
