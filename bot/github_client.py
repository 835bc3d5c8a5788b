"""gidgethub's aiohttp client with an installation's token and Gantry's retry policy."""

from __future__ import annotations

import asyncio
import http
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from config.errors import GantryError

USER_AGENT = "gantry-bot"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "PATCH", "DELETE"}
# POSTs that GitHub treats as idempotent or whose repetition is harmless: adding a reaction
# that exists answers 200 with it; a second installation token is simply another token.
IDEMPOTENT_POSTS = re.compile(r"/reactions$|/app/installations/\d+/access_tokens$")
RATE_LIMIT_STATUSES = frozenset({403, 429})
# GitHub: without `retry-after` or a reset time, wait at least a minute.
# https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#handle-rate-limit-errors-appropriately
DEFAULT_RATE_LIMIT_WAIT_S = 60.0
# `x-ratelimit-reset` counts whole seconds: a little past it, the window has surely turned.
RESET_MARGIN_S = 0.5
RATE_LIMITED_MESSAGE = "GitHub API rate-limited until {until:%H:%M} UTC"

TokenSource = Callable[[], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class UncertainWriteError(GantryError):
    """A write failed in a way that does not say whether GitHub carried it out."""


class RateLimitedError(GantryError, gidgethub.BadRequest):
    """GitHub refuses requests until `until` (Unix time), too far off to wait for."""

    def __init__(self, status: int, headers: Mapping[str, str], until: float) -> None:
        self.until = until
        when = datetime.fromtimestamp(until, UTC)
        message = RATE_LIMITED_MESSAGE.format(until=when)
        super().__init__(http.HTTPStatus(status), message, headers=headers)


@dataclass(frozen=True)
class RateLimit:
    """A request refused by a rate limit: seconds to wait, and the Unix time that ends at."""

    wait: float
    until: float


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; `max_wait` caps any single rate-limit wait."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the given 1-based attempt."""
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not crypto)


def is_retry_safe(method: str, url: str) -> bool:
    """Whether repeating this request after an unclear failure cannot do harm."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return method.upper() == "POST" and bool(IDEMPOTENT_POSTS.search(url.split("?")[0]))


def github_now(headers: Mapping[str, str], now: float) -> float:
    """GitHub's clock from the response's `date`, so our clock's skew cannot shorten a wait."""
    try:
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return now


def rate_limit_wait_s(
    status: int, headers: Mapping[str, str], body: bytes, now: float
) -> float | None:
    """Seconds until GitHub takes requests again, or None if this is no rate limit."""
    if status not in RATE_LIMIT_STATUSES:
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return DEFAULT_RATE_LIMIT_WAIT_S
    if headers.get("x-ratelimit-remaining") == "0":  # the primary limit: wait for its reset
        try:
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return DEFAULT_RATE_LIMIT_WAIT_S
        return max(0.0, reset - github_now(headers, now)) + RESET_MARGIN_S
    if status == 429 or b"secondary rate limit" in body.lower():
        return DEFAULT_RATE_LIMIT_WAIT_S
    return None


def rate_limit(
    status: int, headers: Mapping[str, str], body: bytes, now: float
) -> RateLimit | None:
    """The primary or secondary rate limit a response reports, or None."""
    wait = rate_limit_wait_s(status, headers, body, now)
    return None if wait is None else RateLimit(wait, now + wait)


def retry_delay(
    method: str,
    url: str,
    response: tuple[int, Mapping[str, str], bytes],
    attempt: int,
    policy: RetryPolicy,
    now: float,
) -> float | None:
    """How long to wait before retrying a response, or None to hand it to the caller.

    Raises `RateLimitedError` for a rate limit that is too far off to wait for, or that
    outlasted every attempt: the caller learns until when, instead of a bare 403."""
    status, headers, body = response
    limit = rate_limit(status, headers, body, now)
    if limit is not None:
        # A rate-limited request was refused before it ran: safe to repeat, if we can wait.
        if limit.wait > policy.max_wait or attempt >= policy.attempts:
            raise RateLimitedError(status, headers, limit.until)
        return limit.wait
    if attempt < policy.attempts and status >= 500 and is_retry_safe(method, url):
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
        clock: Clock = time.time,
    ) -> None:
        super().__init__(session, USER_AGENT, base_url=base_url)
        self._token = token
        self._policy = policy
        self._sleep = sleep
        self._clock = clock

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
            response = (status, response_headers, data)
            delay = retry_delay(method, url, response, attempt, self._policy, self._clock())
            if delay is None:
                return response
            await self._sleep(delay)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)
