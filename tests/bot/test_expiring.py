"""The in-memory caches forget what expired: a server up for months stays small."""

from __future__ import annotations

from typing import cast

import pytest
from gidgethub.abc import GitHubAPI

from bot import permissions
from bot.expiring import MIN_SWEEP, Expiring
from bot.permissions import PermissionCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_for_its_ttl_and_then_forgotten() -> None:
    clock = Clock()
    cache: Expiring[str, int] = Expiring(60, clock)
    cache.put("a", 1)
    clock.now = 59.9
    assert cache.get("a") == 1
    clock.now = 60.1
    assert cache.get("a") is None


async def test_thirty_days_of_new_commenters_leave_about_one_minute_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    cache = PermissionCache(ttl=60, clock=clock)

    async def level(gh: GitHubAPI, repo: str, login: str) -> str:
        return "write"

    monkeypatch.setattr(permissions, "fetch_level", level)
    gh = cast(GitHubAPI, None)
    for n in range(30_000):  # a new commenter every 86 s, for 30 days
        clock.now = n * 86.4
        assert await cache.level(gh, "octo/hello", f"user{n}") == "write"
    assert len(cache._entries) <= MIN_SWEEP
