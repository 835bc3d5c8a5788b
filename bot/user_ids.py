"""Users' GitHub ids for co-author trailers: looked up once, kept a while, shared in flight."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.expiring import Expiring
from bot.single_flight import SingleFlight
from runner.publish import Identity, user_identity

log = logging.getLogger(__name__)
# An id never changes, but a login can be renamed and taken by someone else.
CACHE_TTL_S = 3600.0
LOOKUP_ERRORS = (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, KeyError, ValueError)


async def fetch_user_id(gh: GitHubAPI, login: str) -> int:
    """The account id of `login` from `GET /users/{username}`."""
    user = await gh.getitem("/users/{username}", {"username": login})
    return int(user["id"])


class UserIds:
    """Caches login → id for an hour; concurrent lookups of one login share one request.

    GitHub credits a co-author only by `ID+login@users.noreply.github.com`
    (https://docs.github.com/en/account-and-profile/reference/email-addresses-reference),
    so the id is worth a request, but not a failed publish."""

    def __init__(self, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._entries: Expiring[str, int] = Expiring(ttl, clock)
        self._in_flight: SingleFlight[str, int] = SingleFlight()

    async def user_id(self, gh: GitHubAPI, login: str) -> int:
        """The account id of `login`; GitHub's error if it cannot say."""
        key = login.lower()
        hit = self._entries.get(key)
        if hit is not None:
            return hit
        return await self._in_flight.run(key, lambda: self._look_up(gh, key, login))

    async def co_author(self, gh: GitHubAPI, login: str) -> Identity:
        """`login` in the id form GitHub links; the login-only form if the lookup fails."""
        try:
            return user_identity(login, await self.user_id(gh, login))
        except LOOKUP_ERRORS as exc:
            log.warning("no id for %s (%s); co-author trailer without it", login, exc)
            return user_identity(login, None)

    async def _look_up(self, gh: GitHubAPI, key: str, login: str) -> int:
        user_id = await fetch_user_id(gh, login)
        self._entries.put(key, user_id)
        return user_id
