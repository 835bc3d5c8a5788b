"""Issues assigned to the App, or given the trigger label, become requests."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot import triggers
from bot.intake import Outcome
from bot.routing import Dispatch

router = routing.Router()


@router.register("issues", action="assigned")
async def assigned(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Assigning the issue to the App's bot user asks it to work on the issue."""
    assignee = (event.data.get("assignee") or {}).get("login", "")
    if assignee.lower() != ctx.intake.bot_login.lower():
        ctx.outcomes.append(Outcome.IGNORED)
        return
    trigger = triggers.from_issue(event.data)
    ctx.outcomes.append(await ctx.intake.on_issue_trigger(trigger, ctx.delivery_id))


@router.register("issues", action="labeled")
async def labeled(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Adding the trigger label asks the App to work on the issue."""
    label = (event.data.get("label") or {}).get("name", "")
    if label.lower() != ctx.intake.trigger_label.lower():
        ctx.outcomes.append(Outcome.IGNORED)
        return
    trigger = triggers.from_issue(event.data)
    ctx.outcomes.append(await ctx.intake.on_issue_trigger(trigger, ctx.delivery_id))
