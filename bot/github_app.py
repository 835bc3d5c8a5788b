"""The GitHub App's own identity: the App JWT and `GET /app`."""

from __future__ import annotations

from typing import Any

import aiohttp
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_jwt

from config.settings import Settings

USER_AGENT = "gantry-bot"


def app_jwt(settings: Settings) -> str:
    """A short-lived RS256 JWT that authenticates as the App itself."""
    if settings.github_app_id is None:
        raise ValueError("GANTRY_GITHUB_APP_ID is not set")
    return get_jwt(app_id=str(settings.github_app_id), private_key=settings.private_key_pem())


async def fetch_app(session: aiohttp.ClientSession, settings: Settings) -> dict[str, Any]:
    """`GET /app` with the App JWT: proves the credentials and gives the App's slug."""
    gh = GitHubAPI(session, USER_AGENT, base_url=settings.api_url)
    result: dict[str, Any] = await gh.getitem("/app", jwt=app_jwt(settings))
    return result
