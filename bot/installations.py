"""Remember which installations and repositories the App serves, and forget removed ones."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot.intake import Outcome
from bot.routing import Dispatch

router = routing.Router()


def repo_names(repos: list[dict[str, Any]] | None) -> list[str]:
    return [repo["full_name"] for repo in repos or []]


@router.register("installation", action="created")
@router.register("installation", action="unsuspend")
@router.register("installation", action="new_permissions_accepted")
async def installed(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    installation = event.data["installation"]
    store = ctx.intake.store
    await store.remember_installation(installation["id"], installation["account"]["login"])
    await store.set_installation_repos(
        installation["id"], repo_names(event.data.get("repositories")), []
    )
    ctx.outcomes.append(Outcome.ANSWERED)


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def uninstalled(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    installation_id = event.data["installation"]["id"]
    await ctx.intake.store.forget_installation(installation_id)
    if ctx.tokens is not None:
        ctx.tokens.forget(installation_id)
    ctx.outcomes.append(Outcome.ANSWERED)


@router.register("installation_repositories", action="added")
@router.register("installation_repositories", action="removed")
async def repositories_changed(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    installation = event.data["installation"]
    store = ctx.intake.store
    await store.remember_installation(installation["id"], installation["account"]["login"])
    await store.set_installation_repos(
        installation["id"],
        repo_names(event.data.get("repositories_added")),
        repo_names(event.data.get("repositories_removed")),
    )
    ctx.outcomes.append(Outcome.ANSWERED)
