"""Who may ask: the commenter's permission on the repository, cached briefly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.expiring import Expiring
from bot.single_flight import SingleFlight

# GitHub's repository roles, weakest first.
LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
CACHE_TTL_S = 60.0


def level_of(response: dict[str, Any]) -> str:
    """The role from the collaborator-permission response (`role_name` knows triage/maintain)."""
    role = str(response.get("role_name") or "")
    return role if role in LEVELS else str(response.get("permission") or "none")


def reaches(level: str, minimum: str) -> bool:
    """Whether `level` is at least `minimum`; an unknown level reaches nothing."""
    if level not in LEVELS:
        return False
    return LEVELS.index(level) >= LEVELS.index(minimum)


async def fetch_level(gh: GitHubAPI, repo: str, login: str) -> str:
    """The user's role on `repo` (`owner/name`) from GitHub; "none" for an unknown user."""
    try:
        data = await gh.getitem(
            "/repos/{+repo}/collaborators/{username}/permission",
            {"repo": repo, "username": login},
        )
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
        return "none"
    return level_of(data)


class PermissionCache:
    """Caches permission lookups for a minute and shares the ones in flight.

    A burst of comments costs one API call per (repository, user), however many arrive
    before the first answer."""

    def __init__(self, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._entries: Expiring[tuple[str, str], str] = Expiring(ttl, clock)
        self._in_flight: SingleFlight[tuple[str, str], str] = SingleFlight()

    async def level(self, gh: GitHubAPI, repo: str, login: str) -> str:
        """The user's role on `repo` (`owner/name`); "none" for someone GitHub does not know."""
        key = (repo.lower(), login.lower())
        hit = self._entries.get(key)
        if hit is not None:
            return hit
        return await self._in_flight.run(key, lambda: self._look_up(gh, key, repo, login))

    async def _look_up(self, gh: GitHubAPI, key: tuple[str, str], repo: str, login: str) -> str:
        level = await fetch_level(gh, repo, login)
        self._entries.put(key, level)
        return level
