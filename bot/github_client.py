"""gidgethub's aiohttp client with an installation's token and Gantry's retry policy."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from gidgethub.aiohttp import GitHubAPI

from config.errors import GantryError

USER_AGENT = "gantry-bot"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "PATCH", "DELETE"}
# POSTs that GitHub treats as idempotent or whose repetition is harmless: adding a reaction
# that exists answers 200 with it; a second installation token is simply another token.
IDEMPOTENT_POSTS = re.compile(r"/reactions$|/app/installations/\d+/access_tokens$")
RATE_LIMIT_STATUSES = frozenset({403, 429})

TokenSource = Callable[[], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]


class UncertainWriteError(GantryError):
    """A write failed in a way that does not say whether GitHub carried it out."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; `max_wait` caps any single `Retry-After`."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the given 1-based attempt."""
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not crypto)


def is_retry_safe(method: str, url: str) -> bool:
    """Whether repeating this request after an unclear failure cannot do harm."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return method.upper() == "POST" and bool(IDEMPOTENT_POSTS.search(url.split("?")[0]))


def rate_limit_wait(status: int, headers: Mapping[str, str], body: bytes) -> float | None:
    """Seconds to wait for a primary or secondary rate limit, or None if this is not one."""
    if status not in RATE_LIMIT_STATUSES:
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if status == 429 or headers.get("x-ratelimit-remaining") == "0":
        return 60.0
    if b"secondary rate limit" in body.lower():
        return 60.0
    return None


def retry_delay(
    method: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    attempt: int,
    policy: RetryPolicy,
) -> float | None:
    """How long to wait before retrying a response, or None to hand it to the caller."""
    if attempt >= policy.attempts:
        return None
    wait = rate_limit_wait(status, headers, body)
    if wait is not None:
        # A rate-limited request was refused before it ran: safe to repeat, if we can wait.
        return wait if wait <= policy.max_wait else None
    if status >= 500 and is_retry_safe(method, url):
        return policy.backoff(attempt)
    return None


DEFAULT_RETRY = RetryPolicy()


class GitHubClient(GitHubAPI):
    """Adds the installation token to every request and retries what is safe to retry."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        token: TokenSource | None = None,
        policy: RetryPolicy = DEFAULT_RETRY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(session, USER_AGENT, base_url=base_url)
        self._token = token
        self._policy = policy
        self._sleep = sleep

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        request_headers = dict(headers)
        if self._token is not None and "authorization" not in request_headers:
            request_headers["authorization"] = f"token {await self._token()}"
        attempt = 0
        while True:
            attempt += 1
            try:
                status, response_headers, data = await super()._request(
                    method, url, request_headers, body
                )
            except aiohttp.ClientConnectorError:
                # Never connected: nothing was sent, so any request may be repeated.
                if attempt >= self._policy.attempts:
                    raise
                await self._sleep(self._policy.backoff(attempt))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not is_retry_safe(method, url):
                    raise UncertainWriteError(
                        f"{method} {url}: {type(exc).__name__}; it may or may not have happened"
                    ) from exc
                if attempt >= self._policy.attempts:
                    raise
                await self._sleep(self._policy.backoff(attempt))
                continue
            delay = retry_delay(method, url, status, response_headers, data, attempt, self._policy)
            if delay is None:
                return status, response_headers, data
            await self._sleep(delay)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)
