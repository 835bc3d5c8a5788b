"""Every child's exit status is read by asyncio, never guessed: the git CGI's clients go away."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.forge.conftest import OWNER, REPO, Seeded

GUESSED = "Unknown child process"
ROUNDS = 100


async def test_clients_that_leave_early_leave_no_exit_status_guessed(
    seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    url = f"{seeded.forge.git_url(OWNER, REPO, seeded.token)}/info/refs?service=git-upload-pack"
    for _ in range(ROUNDS):
        # A fresh connection each round, closed as soon as the answer is read: the handler is
        # cancelled around the moment its CGI exits.
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            await response.read()
    assert [r.getMessage() for r in caplog.records if GUESSED in r.getMessage()] == []
