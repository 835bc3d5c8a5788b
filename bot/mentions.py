"""`@handle <request>` in issue comments, review comments and review bodies."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot import triggers
from bot.pull_requests import head_of
from bot.routing import Dispatch

router = routing.Router()


@router.register("issue_comment", action="created")
async def issue_comment(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """A comment on an issue or a pull request's conversation (edits never re-trigger)."""
    trigger = triggers.from_issue_comment(event.data)
    ctx.outcomes.append(await ctx.intake.on_comment(trigger, ctx.delivery_id))


@router.register("pull_request_review_comment", action="created")
async def review_comment(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """A comment on a line of a pull request's diff."""
    trigger = triggers.from_review_comment(event.data)
    head = head_of(event.data["pull_request"])
    ctx.outcomes.append(await ctx.intake.on_comment(trigger, ctx.delivery_id, head))


@router.register("pull_request_review", action="submitted")
async def review(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """The body of a submitted review."""
    trigger = triggers.from_review(event.data)
    head = head_of(event.data["pull_request"])
    ctx.outcomes.append(await ctx.intake.on_comment(trigger, ctx.delivery_id, head))
