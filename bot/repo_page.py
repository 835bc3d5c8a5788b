"""A repository's task list, `/repos/<owner>/<name>/tasks?sig=…`: every task with its state,
requester and request, each linked to its signed task page."""

from __future__ import annotations

import html
import time

from bot.task_page import STYLE, signature
from runner.task import Task

REQUEST_CHARS = 200


def task_link(secret: str, task_id: int) -> str:
    """A task page's link relative to the list (`../../../` climbs `repos/<owner>/<name>/`), so
    it works whatever address or prefix the server is reached at."""
    return f"../../../tasks/{task_id}?sig={signature(secret, task_id)}"


def shorten(text: str, limit: int = REQUEST_CHARS) -> str:
    """The request's first line, cut at `limit` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def task_row(secret: str, task: Task) -> str:
    """One task's row; everything from the task escaped."""
    cells = (
        f"<a href='{html.escape(task_link(secret, task.id))}'>#{task.id}</a>",
        html.escape(task.state.value),
        f"#{task.number}",
        f"@{html.escape(task.requester)}",
        html.escape(shorten(task.request)),
        html.escape(when(task.created_at)),
    )
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def render(repo: str, tasks: list[Task], secret: str, limit: int) -> str:
    """The list, newest first, with a note when older tasks are not shown."""
    title = f"Gantry tasks: {repo}"
    head = "".join(
        f"<th>{h}</th>" for h in ("task", "state", "thread", "requester", "request", "asked")
    )
    rows = "".join(task_row(secret, t) for t in tasks) or "<tr><td colspan='6'>(none)</td></tr>"
    more = f"<p>The latest {limit} tasks are shown.</p>" if len(tasks) >= limit else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{more}"
        f"<table id='tasks'><tr>{head}</tr>{rows}</table></body></html>"
    )
