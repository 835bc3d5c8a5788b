"""Who may ask: the commenter's permission on the repository, cached briefly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

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


class PermissionCache:
    """Caches permission lookups for a minute: a burst of comments costs one API call."""

    def __init__(self, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, str]] = {}

    async def level(self, gh: GitHubAPI, repo: str, login: str) -> str:
        """The user's role on `repo` (`owner/name`); "none" for someone GitHub does not know."""
        key = (repo.lower(), login.lower())
        hit = self._entries.get(key)
        if hit and hit[0] > self._clock():
            return hit[1]
        try:
            data = await gh.getitem(
                "/repos/{+repo}/collaborators/{username}/permission",
                {"repo": repo, "username": login},
            )
            level = level_of(data)
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:
                raise
            level = "none"
        self._entries[key] = (self._clock() + self._ttl, level)
        return level
