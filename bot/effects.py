"""What a delivery does on GitHub, done once per delivery however often the inbox tries it.

A reply is recorded (its text) before it is posted and marked done (the comment) after. A
try that finds it begun but not done cannot know whether the earlier POST reached GitHub (a
5xx or a dropped connection after the write), so it looks for the comment first: the bot's
comment with that text, posted since the reply was begun, that no other delivery holds."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from bot import replies
from bot.triggers import Trigger
from runner.store import Effect, TaskStore

log = logging.getLogger(__name__)
REPLY = "reply"
GONE = "gone"  # the result of a reply to a thread that no longer exists
# GitHub's clock may be behind ours: look a little further back than the reply was begun.
CLOCK_SLACK_S = 300.0
REVIEW_COMMENTS_PATH = "/repos/{+repo}/pulls/{number}/comments{?since,per_page}"
ISSUE_COMMENTS_PATH = "/repos/{+repo}/issues/{number}/comments{?since,per_page}"


def since(started_at: float) -> str:
    """GitHub's `since` (ISO 8601, UTC) a little before `started_at`."""
    when = datetime.fromtimestamp(started_at - CLOCK_SLACK_S, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def result_of(posted: replies.Posted) -> str:
    """A posted reply as its effect's result: issue and review comments number apart."""
    return f"{'review' if posted.review else 'issue'}:{posted.id}"


def candidates(comments: Iterable[dict[str, Any]], prefix: str, login: str, body: str) -> list[str]:
    """The results of the comments that could be this reply: the bot's, with its exact text."""
    return [
        f"{prefix}:{c['id']}"
        for c in comments
        if (c.get("user") or {}).get("login", "").lower() == login.lower() and c.get("body") == body
    ]


async def listed(gh: GitHubAPI, path: str, trigger: Trigger, started_at: float) -> list[Any]:
    where: dict[str, str | int] = {
        "repo": trigger.repo, "number": trigger.number, "since": since(started_at), "per_page": 100
    }  # fmt: skip
    return [c async for c in gh.getiter(path, where)]


async def find_reply(
    store: TaskStore, gh: GitHubAPI, trigger: Trigger, effect: Effect, login: str
) -> str | None:
    """The comment an earlier, unclear try posted for this delivery, if it did."""
    found: list[str] = []
    if replies.in_thread(trigger):
        review = await listed(gh, REVIEW_COMMENTS_PATH, trigger, effect.started_at)
        found += candidates(review, "review", login, effect.body)
    issue = await listed(gh, ISSUE_COMMENTS_PATH, trigger, effect.started_at)
    found += candidates(issue, "issue", login, effect.body)
    claimed = await store.claimed_effects(REPLY, found)
    return next((result for result in found if result not in claimed), None)


async def reply_once(
    store: TaskStore, gh: GitHubAPI, trigger: Trigger, delivery_id: str, body: str, login: str
) -> None:
    """Post the delivery's reply unless an earlier try did; the first try's text wins."""
    effect = await store.begin_effect(delivery_id, REPLY, body)
    if effect.result:
        return
    if not effect.fresh:
        found = await find_reply(store, gh, trigger, effect, login)
        if found is not None:
            await store.finish_effect(delivery_id, REPLY, found)
            return
    try:
        posted = await replies.post(gh, trigger, effect.body)
    except gidgethub.BadRequest as exc:
        if not replies.is_gone(exc):
            raise
        # The thread was deleted (or moved out of reach): no retry will bring it back.
        log.warning(
            "delivery %s: no reply, %s#%d is gone", delivery_id, trigger.repo, trigger.number
        )
        await store.finish_effect(delivery_id, REPLY, GONE)
        return
    await store.finish_effect(delivery_id, REPLY, result_of(posted))
