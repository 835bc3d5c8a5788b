"""App JWTs and installation tokens are checked the way GitHub checks them."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest
from gidgethub import BadRequest
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt

from forge.auth import generate_key_pair
from forge.server import Forge
from tests.forge.conftest import OWNER, REPO, Seeded

DOCS_URL = "https://docs.github.com/rest"


def _jwt(seeded: Seeded, *, iat_offset: int = -30, lifetime: int = 540, key: str = "") -> str:
    now = int(time.time())
    payload = {
        "iat": now + iat_offset,
        "exp": now + iat_offset + lifetime,
        "iss": str(seeded.app.app_id),
    }
    return jwt.encode(payload, key or seeded.app.private_key_pem, algorithm="RS256")


async def _status(session: aiohttp.ClientSession, url: str, authorization: str) -> int:
    async with session.get(url, headers={"Authorization": authorization}) as response:
        return response.status


async def test_gidgethub_exchanges_jwt_for_token(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    gh = GitHubAPI(session, "forge-tests", base_url=seeded.forge.api_url)
    app_jwt = get_jwt(app_id=str(seeded.app.app_id), private_key=seeded.app.private_key_pem)
    app = await gh.getitem("/app", jwt=app_jwt)
    assert (app["id"], app["slug"]) == (seeded.app.app_id, "gantry")
    installation = await gh.getitem(f"/repos/{OWNER}/{REPO}/installation", jwt=app_jwt)
    assert installation["id"] == seeded.installation_id

    token = await get_installation_access_token(
        gh,
        installation_id=str(seeded.installation_id),
        app_id=str(seeded.app.app_id),
        private_key=seeded.app.private_key_pem,
    )
    assert token["token"].startswith("ghs_")
    repo = await gh.getitem(f"/repos/{OWNER}/{REPO}", oauth_token=token["token"])
    assert repo["clone_url"] == seeded.forge.git_url(OWNER, REPO)


@pytest.mark.parametrize(
    ("iat_offset", "lifetime"),
    [
        pytest.param(-700, 600, id="expired"),
        pytest.param(120, 300, id="iat-in-the-future"),
        pytest.param(-30, 660, id="lifetime-over-10-minutes"),
    ],
)
async def test_bad_jwt_times_are_401(
    seeded: Seeded, session: aiohttp.ClientSession, iat_offset: int, lifetime: int
) -> None:
    token = _jwt(seeded, iat_offset=iat_offset, lifetime=lifetime)
    assert await _status(session, f"{seeded.forge.api_url}/app", f"Bearer {token}") == 401


async def test_jwt_within_clock_skew_is_accepted(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    token = _jwt(seeded, iat_offset=45, lifetime=540)
    assert await _status(session, f"{seeded.forge.api_url}/app", f"Bearer {token}") == 200


async def test_jwt_signed_with_wrong_key_is_401(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    other_key = generate_key_pair().private_pem
    gh = GitHubAPI(session, "forge-tests", base_url=seeded.forge.api_url)
    with pytest.raises(BadRequest) as caught:
        await get_installation_access_token(
            gh,
            installation_id=str(seeded.installation_id),
            app_id=str(seeded.app.app_id),
            private_key=other_key,
        )
    assert caught.value.status_code == 401
    forged = _jwt(seeded, key=other_key)
    assert await _status(session, f"{seeded.forge.api_url}/app", f"Bearer {forged}") == 401


@pytest.mark.parametrize("scheme", ["token", "Bearer"])
async def test_token_accepted_with_either_scheme(
    seeded: Seeded, session: aiohttp.ClientSession, scheme: str
) -> None:
    url = f"{seeded.forge.api_url}/repos/{OWNER}/{REPO}"
    assert await _status(session, url, f"{scheme} {seeded.token}") == 200


async def test_expired_missing_and_unknown_tokens_are_bad_credentials(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    url = f"{seeded.forge.api_url}/repos/{OWNER}/{REPO}/branches"
    seeded.forge.expire_tokens()
    for headers in ({"Authorization": f"token {seeded.token}"}, {}, {"Authorization": "token x"}):
        async with session.get(url, headers=headers) as response:
            assert response.status == 401
            assert await response.json() == {
                "message": "Bad credentials",
                "documentation_url": DOCS_URL,
            }


async def test_short_token_ttl_expires_with_the_clock(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    seeded.forge.set_token_ttl(60)
    token = seeded.forge.mint_token(seeded.installation_id)
    url = f"{seeded.forge.api_url}/repos/{OWNER}/{REPO}"
    assert await _status(session, url, f"token {token}") == 200
    seeded.forge.advance_clock(61)
    assert await _status(session, url, f"token {token}") == 401


async def test_token_of_another_installation_is_404(
    seeded: Seeded, session: aiohttp.ClientSession, forge: Forge
) -> None:
    await forge.create_repo("elsewhere", "things")
    other = forge.mint_token(forge.install(seeded.app.app_id, "elsewhere", ["things"]))
    url = f"{forge.api_url}/repos/{OWNER}/{REPO}"
    assert await _status(session, url, f"token {other}") == 404
    assert (
        await _status(session, f"{forge.api_url}/repos/elsewhere/things", f"token {other}") == 200
    )
