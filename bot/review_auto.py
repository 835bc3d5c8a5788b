"""`review.auto`: a pull request opened, reopened as ready or marked ready gets a review."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot.intake import Outcome
from bot.pull_requests import head_of
from bot.routing import Dispatch
from bot.triggers import Trigger

router = routing.Router()


def trigger_of_pull(data: dict[str, Any]) -> Trigger:
    """A `pull_request` delivery as a trigger: its sender asks, on the pull request."""
    pull, sender, repo = data["pull_request"], data["sender"], data["repository"]
    return Trigger(
        event="pull_request",
        repo=repo["full_name"],
        installation_id=int(data["installation"]["id"]),
        clone_url=repo["clone_url"],
        default_branch=repo.get("default_branch") or "main",
        number=int(pull["number"]),
        is_pull_request=True,
        title=pull.get("title") or "",
        comment_id=None,
        comment_kind="issue",
        author=sender["login"],
        author_type=sender.get("type", "User"),
        body="",
        head_ref=pull["head"]["ref"],
        head_sha=pull["head"]["sha"],
        thread_body=pull.get("body") or "",
    )


@router.register("pull_request", action="opened")
@router.register("pull_request", action="ready_for_review")
async def pull_request_ready(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Review a pull request that is ready (never a draft) when the config says so."""
    pull = event.data["pull_request"]
    if pull.get("draft") or pull.get("state", "open") != "open":
        ctx.outcomes.append(Outcome.IGNORED)
        return
    trigger = trigger_of_pull(event.data)
    head = head_of(pull)
    ctx.outcomes.append(await ctx.intake.on_auto_review(trigger, head, ctx.delivery_id))
