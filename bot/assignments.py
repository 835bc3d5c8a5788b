"""Issues assigned to the App, or given the trigger label, become requests."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot import triggers
from bot.routing import Dispatch

router = routing.Router()


@router.register("issues", action="assigned")
async def assigned(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Assigning the issue to the App's bot user asks it to work on the issue."""
    assignee = str((event.data.get("assignee") or {}).get("login", ""))
    trigger = triggers.from_issue(event.data)
    ctx.outcomes.append(await ctx.intake.on_assigned(trigger, assignee, ctx.delivery_id))


@router.register("issues", action="labeled")
async def labeled(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Adding the trigger label asks the App to work on the issue."""
    label = str((event.data.get("label") or {}).get("name", ""))
    trigger = triggers.from_issue(event.data)
    ctx.outcomes.append(await ctx.intake.on_labeled(trigger, label, ctx.delivery_id))
