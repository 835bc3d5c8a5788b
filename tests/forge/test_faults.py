"""Injected faults: latency, 5xx (before or after the write), secondary rate limits, 429s
and connection resets."""

from __future__ import annotations

import time

import aiohttp
import pytest
from gidgethub import BadRequest, GitHubBroken

from forge.context import RequestRecord
from forge.faults import SECONDARY_RATE_LIMIT_MESSAGE
from tests.forge.conftest import OWNER, REPO, Seeded

PULLS = "/repos/{owner}/{repo}/pulls"
PULLS_PATH = f"/repos/{OWNER}/{REPO}/pulls"


async def test_error_twice_then_success_is_logged(seeded: Seeded) -> None:
    seeded.forge.inject_fault("GET", PULLS, "error", count=2, status=502)
    for _ in range(2):
        with pytest.raises(GitHubBroken) as caught:
            await seeded.gh.getitem(PULLS_PATH)
        assert caught.value.status_code == 502
    assert await seeded.gh.getitem(PULLS_PATH) == []
    assert seeded.forge.requests[-3:] == [
        RequestRecord("GET", PULLS_PATH, 502),
        RequestRecord("GET", PULLS_PATH, 502),
        RequestRecord("GET", PULLS_PATH, 200),
    ]


async def test_fault_only_hits_its_method_and_route(seeded: Seeded) -> None:
    seeded.forge.inject_fault("POST", PULLS, "error", count=1, status=500)
    assert await seeded.gh.getitem(PULLS_PATH) == []
    assert (await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}"))["name"] == REPO
    assert seeded.forge.context.faults.rules[0].remaining == 1


async def test_latency_delays_then_answers(seeded: Seeded) -> None:
    seeded.forge.inject_fault("GET", PULLS, "latency", count=1, delay=0.3)
    started = time.monotonic()
    assert await seeded.gh.getitem(PULLS_PATH) == []
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await seeded.gh.getitem(PULLS_PATH)
    assert time.monotonic() - started < 0.3


async def test_secondary_rate_limit_is_403_with_retry_after(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    seeded.forge.inject_fault("*", "/repos/*", "secondary_rate_limit", count=1, retry_after=7)
    url = f"{seeded.forge.api_url}{PULLS_PATH}"
    headers = {"Authorization": f"token {seeded.token}"}
    async with session.get(url, headers=headers) as response:
        assert response.status == 403
        assert response.headers["Retry-After"] == "7"
        assert (await response.json())["message"] == SECONDARY_RATE_LIMIT_MESSAGE
    async with session.get(url, headers=headers) as response:
        assert response.status == 200


async def test_too_many_requests_is_429_with_retry_after(seeded: Seeded) -> None:
    seeded.forge.inject_fault("GET", PULLS, "too_many_requests", count=1, retry_after=3)
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(PULLS_PATH)
    assert caught.value.status_code == 429
    assert caught.value.headers is not None
    assert caught.value.headers["Retry-After"] == "3"


async def test_connection_reset_drops_without_response(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Bug")
    path = f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments"
    seeded.forge.inject_fault("POST", "/repos/{owner}/{repo}/issues/{n}/comments", "reset")
    # POST: aiohttp retries idempotent methods once by itself after a dropped connection.
    with pytest.raises(aiohttp.ClientConnectionError):
        await seeded.gh.post(path, data={"body": "lost"})
    await seeded.gh.post(path, data={"body": "kept"})
    assert [r.status for r in seeded.forge.requests[-2:]] == [0, 201]
    assert [c["body"] for c in seeded.forge.comments(OWNER, REPO, issue.number)] == ["kept"]


async def test_an_error_after_the_write_keeps_what_was_written(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Bug")
    path = f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments"
    route = "/repos/{owner}/{repo}/issues/{n}/comments"
    seeded.forge.inject_fault("POST", route, "error_after_write", status=502)
    with pytest.raises(GitHubBroken) as caught:
        await seeded.gh.post(path, data={"body": "written"})
    assert caught.value.status_code == 502
    assert seeded.forge.requests[-1].status == 502
    assert [c["body"] for c in seeded.forge.comments(OWNER, REPO, issue.number)] == ["written"]


async def test_reset_of_a_get_survives_one_client_retry(seeded: Seeded) -> None:
    seeded.forge.inject_fault("GET", PULLS, "reset", count=2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await seeded.gh.getitem(PULLS_PATH)
    assert [r.status for r in seeded.forge.requests[-2:]] == [0, 0]


async def test_faults_reach_git_too(seeded: Seeded, session: aiohttp.ClientSession) -> None:
    seeded.forge.inject_fault(
        "GET", "/{owner}/{repo}.git/info/refs", "error", count=None, status=503
    )
    url = f"{seeded.forge.git_url(OWNER, REPO)}/info/refs?service=git-upload-pack"
    async with session.get(url) as response:
        assert response.status == 503
    seeded.forge.clear_faults()
    async with session.get(url) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'


async def test_primary_rate_limit_holds_until_its_reset(seeded: Seeded) -> None:
    fault = seeded.forge.inject_fault("GET", PULLS, "primary_rate_limit", count=None, retry_after=5)
    now = [1_800_000_000.2]
    fault.clock = lambda: now[0]
    for _ in range(2):
        with pytest.raises(BadRequest) as caught:
            await seeded.gh.getitem(PULLS_PATH)
        headers = caught.value.headers
        assert caught.value.status_code == 403
        assert headers["x-ratelimit-remaining"] == "0"
        assert headers["x-ratelimit-reset"] == "1800000006"
        assert "retry-after" not in headers
        now[0] += 2
    now[0] += 1
    assert await seeded.gh.getitem(PULLS_PATH) == []


async def test_primary_rate_limit_may_be_a_429(seeded: Seeded) -> None:
    seeded.forge.inject_fault("GET", PULLS, "primary_rate_limit", status=429, retry_after=60)
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(PULLS_PATH)
    assert caught.value.status_code == 429
    assert caught.value.headers["x-ratelimit-remaining"] == "0"
