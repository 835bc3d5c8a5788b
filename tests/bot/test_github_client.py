"""The GitHub client's retry policy and the installation-token cache, against the stand-in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import gidgethub
import pytest
import pytest_asyncio

from bot.github_app import fetch_app
from bot.github_client import (
    GitHubClient,
    RateLimitedError,
    RetryPolicy,
    UncertainWriteError,
    is_retry_safe,
    rate_limit_wait_s,
    retry_delay,
)
from bot.tokens import REFRESH_MARGIN_S, InstallationTokens
from config.settings import Settings
from forge.server import Forge
from gantry import doctor

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, max_wait=5.0)
COMMENTS = "/repos/{owner}/{repo}/issues/{number}/comments"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def app_settings(forge: Forge) -> tuple[Settings, int]:
    await forge.create_repo("octo", "hello")
    forge.create_issue("octo", "hello", "An issue")
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, "octo", ["hello"])
    settings = Settings(
        github_webhook_secret="x",
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
    )
    return settings, installation_id


def test_which_requests_are_safe_to_repeat() -> None:
    assert is_retry_safe("GET", "https://h/repos/a/b")
    assert is_retry_safe("PATCH", "https://h/repos/a/b/issues/comments/1")
    assert is_retry_safe("POST", "https://h/repos/a/b/issues/comments/1/reactions")
    assert is_retry_safe("POST", "https://h/app/installations/5/access_tokens")
    assert not is_retry_safe("POST", "https://h/repos/a/b/issues/1/comments")
    assert not is_retry_safe("POST", "https://h/repos/a/b/pulls")


NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
PRIMARY = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
REPOS = "/repos/{owner}/{repo}"


def test_rate_limit_recognition() -> None:
    assert rate_limit_wait_s(403, {"retry-after": "7"}, b"", NOW) == 7.0
    assert rate_limit_wait_s(429, {}, b"", NOW) == 60.0
    assert rate_limit_wait_s(403, {"x-ratelimit-remaining": "0"}, b"", NOW) == 60.0
    secondary = b'{"message":"You have exceeded a secondary rate limit"}'
    assert rate_limit_wait_s(403, {}, secondary, NOW) == 60.0
    assert rate_limit_wait_s(403, {}, b'{"message":"Resource not accessible"}', NOW) is None
    assert rate_limit_wait_s(502, {"retry-after": "1"}, b"", NOW) is None


def test_a_primary_limit_waits_until_its_reset_on_githubs_clock() -> None:
    assert rate_limit_wait_s(403, PRIMARY, b"", NOW) == 30.5
    assert rate_limit_wait_s(429, PRIMARY, b"", NOW + 10) == 20.5
    # Our clock is 100 s behind GitHub's; the `date` header says how far the reset really is.
    dated = {**PRIMARY, "date": "Fri, 15 Jan 2027 08:00:20 GMT"}
    assert rate_limit_wait_s(403, dated, b"", NOW - 100) == 10.5
    assert rate_limit_wait_s(403, PRIMARY, b"", NOW + 300) == 0.5


def test_a_far_rate_limit_fails_at_once_saying_until_when() -> None:
    far = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3000)}
    with pytest.raises(RateLimitedError) as caught:
        retry_delay("GET", "https://h/repos/a/b", (403, far, b""), 1, RetryPolicy(), NOW)
    assert str(caught.value) == "GitHub API rate-limited until 08:50 UTC"
    assert caught.value.status_code == 403
    assert isinstance(caught.value, gidgethub.BadRequest)
    near = (403, PRIMARY, b"")
    assert retry_delay("POST", "https://h/repos/a/b/pulls", near, 1, RetryPolicy(), NOW) == 30.5
    with pytest.raises(RateLimitedError):
        retry_delay("GET", "https://h/repos/a/b", near, 4, RetryPolicy(attempts=4), NOW)


def test_the_message_is_in_utc() -> None:
    error = RateLimitedError(429, {}, datetime(2027, 1, 15, 23, 59, 59, tzinfo=UTC).timestamp())
    assert "rate-limited until 23:59 UTC" in str(error)


async def test_a_primary_limit_is_waited_out_until_its_reset(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    tokens = InstallationTokens(session, settings, policy=FAST)
    await tokens.get(installation_id)
    forge.inject_fault("GET", REPOS, "primary_rate_limit", count=None, retry_after=2)
    gh = GitHubClient(
        session, base_url=forge.api_url, token=lambda: tokens.get(installation_id), policy=FAST
    )
    started = time.monotonic()
    assert (await gh.getitem("/repos/octo/hello"))["name"] == "hello"
    assert 2.0 <= time.monotonic() - started < 4.0
    statuses = [r.status for r in forge.requests if r.path == "/repos/octo/hello"]
    assert statuses == [403, 200]


async def test_a_primary_limit_far_off_fails_at_once(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("GET", REPOS, "primary_rate_limit", count=None, retry_after=3600)
    started = time.time()
    with pytest.raises(RateLimitedError) as caught:
        await gh.getitem("/repos/octo/hello")
    # The stand-in's reset is whole seconds from when it answered: a minute may turn between.
    minutes = {f"{datetime.fromtimestamp(started + 3600 + d, UTC):%H:%M}" for d in (-2, 0, 2)}
    assert any(f"rate-limited until {m} UTC" in str(caught.value) for m in minutes)
    assert len([r for r in forge.requests if r.path == "/repos/octo/hello"]) == 1


async def test_a_limit_outlasting_every_attempt_says_so(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    tokens = InstallationTokens(session, settings, policy=FAST)
    await tokens.get(installation_id)
    fault = forge.inject_fault("GET", REPOS, "primary_rate_limit", count=None, retry_after=1)
    fault.clock = lambda: 0.0  # the stand-in's window never turns
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    gh = GitHubClient(
        session,
        base_url=forge.api_url,
        token=lambda: tokens.get(installation_id),
        policy=FAST,
        sleep=record,
    )
    with pytest.raises(RateLimitedError):
        await gh.getitem("/repos/octo/hello")
    assert len(slept) == FAST.attempts - 1


async def test_reads_are_retried_through_5xx(forge: Forge, session: aiohttp.ClientSession) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("GET", "/repos/{owner}/{repo}", "error", count=2, status=502)
    repo = await gh.getitem("/repos/octo/hello")
    assert repo["full_name"] == "octo/hello"
    statuses = [r.status for r in forge.requests if r.path == "/repos/octo/hello"]
    assert statuses == [502, 502, 200]


async def test_retries_stop_at_the_cap(forge: Forge, session: aiohttp.ClientSession) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("GET", "/repos/{owner}/{repo}", "error", count=None, status=503)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem("/repos/octo/hello")
    assert len([r for r in forge.requests if r.path == "/repos/octo/hello"]) == FAST.attempts


async def test_a_comment_is_never_posted_twice_after_a_5xx(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("POST", COMMENTS, "error", count=1, status=502)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post("/repos/octo/hello/issues/1/comments", data={"body": "once"})
    posts = [r for r in forge.requests if r.method == "POST" and r.path.endswith("/comments")]
    assert len(posts) == 1


async def test_a_comment_lost_to_a_reset_is_reported_as_uncertain(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("POST", COMMENTS, "reset", count=1)
    with pytest.raises(UncertainWriteError):
        await gh.post("/repos/octo/hello/issues/1/comments", data={"body": "once"})


async def test_writes_wait_out_a_rate_limit(forge: Forge, session: aiohttp.ClientSession) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("POST", COMMENTS, "too_many_requests", count=1, retry_after=0)
    await gh.post("/repos/octo/hello/issues/1/comments", data={"body": "after the wait"})
    assert [c["body"] for c in forge.comments("octo", "hello", 1)] == ["after the wait"]


async def test_a_rate_limit_longer_than_the_cap_is_not_waited(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    gh = InstallationTokens(session, settings, policy=FAST).client(installation_id)
    forge.inject_fault("GET", REPOS, "secondary_rate_limit", retry_after=3600)
    with pytest.raises(RateLimitedError) as info:
        await gh.getitem("/repos/octo/hello")
    assert info.value.status_code == 403


async def test_one_token_refresh_in_flight_per_installation(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    tokens = InstallationTokens(session, settings, policy=FAST)
    forge.inject_fault("POST", "/app/installations/*", "latency", count=None, delay=0.2)
    got = await asyncio.gather(*(tokens.get(installation_id) for _ in range(10)))
    assert len(set(got)) == 1
    minted = [r for r in forge.requests if r.path.endswith("/access_tokens")]
    assert len(minted) == 1


async def test_tokens_are_refreshed_before_they_expire(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    now = [forge.clock()]
    tokens = InstallationTokens(session, settings, policy=FAST, clock=lambda: now[0])
    forge.set_token_ttl(REFRESH_MARGIN_S + 60)
    first = await tokens.get(installation_id)
    now[0] += 30
    assert await tokens.get(installation_id) == first
    now[0] += 60
    second = await tokens.get(installation_id)
    assert second != first
    gh = tokens.client(installation_id)
    assert (await gh.getitem("/repos/octo/hello"))["name"] == "hello"


async def test_fetch_app_and_doctor_use_the_apps_credentials(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, _ = await app_settings(forge)
    assert (await fetch_app(session, settings))["slug"] == "gantry"
    result = await doctor.check_github(settings)
    assert result.status == doctor.OK_MARK
    assert "'gantry'" in result.detail


async def test_doctor_reports_a_key_of_another_app(forge: Forge) -> None:
    settings, _ = await app_settings(forge)
    other = forge.register_app("other")
    wrong = Settings(
        github_webhook_secret="x",
        github_app_id=settings.github_app_id,
        github_private_key=other.private_key_pem,
        github_api_url=forge.api_url,
    )
    result = await doctor.check_github(wrong)
    assert result.failed
    assert "refused the App's credentials (401)" in result.detail


@pytest.mark.parametrize("slash", ["", "/"])
async def test_an_enterprise_base_path_survives_url_joining(
    forge: Forge, session: aiohttp.ClientSession, slash: str
) -> None:
    settings, installation_id = await app_settings(forge)
    assert forge.api_url.endswith("/api/v3")
    tokens = InstallationTokens(session, settings, policy=FAST)
    await tokens.get(installation_id)
    gh = GitHubClient(
        session,
        base_url=forge.api_url + slash,
        token=lambda: tokens.get(installation_id),
        policy=FAST,
    )
    repo = await gh.getitem("/repos/{+repo}", {"repo": "octo/hello"})
    assert repo["full_name"] == "octo/hello"
    assert (await gh.getitem("repos/octo/hello/issues/1"))["number"] == 1
    assert (await gh.getitem(repo["url"]))["name"] == "hello"
    assert all(r.status == 200 for r in forge.requests if r.path.startswith("/repos/"))
