"""Every token the cache hands out outlives any single git call or API request made with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from bot.github_client import RetryPolicy
from bot.tokens import REFRESH_MARGIN_S, InstallationTokens
from config.settings import Settings
from forge.server import Forge
from runner.host_git import GIT_TIMEOUT_S

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, max_wait=5.0)


async def app_settings(forge: Forge) -> tuple[Settings, int]:
    """The App installed on a repository, and settings to act as it."""
    await forge.create_repo("octo", "hello")
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, "octo", ["hello"])
    settings = Settings(
        github_webhook_secret="x",
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
    )
    return settings, installation_id


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def test_a_token_handed_out_at_any_moment_has_the_margin_left(
    forge: Forge, session: aiohttp.ClientSession
) -> None:
    settings, installation_id = await app_settings(forge)
    tokens = InstallationTokens(session, settings, policy=FAST, clock=forge.clock)
    forge.set_token_ttl(REFRESH_MARGIN_S + 1.5)  # a token that gets near its end quickly
    seen = set()
    for _ in range(4):
        token = await tokens.get(installation_id)
        seen.add(token)
        left = forge.state.tokens[token].expires_at - forge.clock()
        assert left >= REFRESH_MARGIN_S >= GIT_TIMEOUT_S
        await asyncio.sleep(0.5)
    assert 2 <= len(seen) <= 3  # reused while fresh, replaced once within the margin
