"""Installation tokens: cached per installation, refreshed before they expire, one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from gidgethub.apps import get_installation_access_token

from bot.github_client import DEFAULT_RETRY, GitHubClient, RetryPolicy
from config.settings import Settings

# Refresh this long before GitHub's expiry (tokens live an hour): every git call and API
# request asks for a token when it starts, and none of them runs longer than this.
REFRESH_MARGIN_S = 600.0


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: float


def parse_expiry(text: str) -> float:
    """GitHub's `expires_at` (ISO 8601, `Z` suffix) as a Unix timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class InstallationTokens:
    """Hands out a valid token per installation; concurrent callers share one refresh."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        policy: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._settings = settings
        self._policy = policy
        self._clock = clock
        self._cache: dict[int, CachedToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def _fresh(self, installation_id: int) -> str | None:
        cached = self._cache.get(installation_id)
        if cached and cached.expires_at - REFRESH_MARGIN_S > self._clock():
            return cached.value
        return None

    async def get(self, installation_id: int) -> str:
        """A token valid for at least `REFRESH_MARGIN_S` more seconds."""
        token = self._fresh(installation_id)
        if token is not None:
            return token
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            token = self._fresh(installation_id)
            if token is None:
                token = await self._refresh(installation_id)
        return token

    async def _refresh(self, installation_id: int) -> str:
        app = GitHubClient(self._session, base_url=self._settings.api_url, policy=self._policy)
        data = await get_installation_access_token(
            app,
            installation_id=str(installation_id),
            app_id=str(self._settings.github_app_id),
            private_key=self._settings.private_key_pem(),
        )
        cached = CachedToken(data["token"], parse_expiry(data["expires_at"]))
        self._cache[installation_id] = cached
        return cached.value

    def forget(self, installation_id: int) -> None:
        """Drop a token, e.g. when the App is uninstalled."""
        self._cache.pop(installation_id, None)

    def client(self, installation_id: int) -> GitHubClient:
        """A client acting as the installation."""
        return GitHubClient(
            self._session,
            base_url=self._settings.api_url,
            token=lambda: self.get(installation_id),
            policy=self._policy,
        )
