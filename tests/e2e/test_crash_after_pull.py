"""A stop or a crash of `gantry serve` after the PR exists (its answer still on the way), then
a restart: the task ends published, with exactly one PR."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from forge.localnet import free_port
from forge.server import Forge
from forge.state import AfterCreate
from tests.bot.conftest import OWNER, REPO
from tests.e2e.test_crash import mention, serve, served_repo, until

# Long enough to stop the server while GitHub has opened the PR but not yet said so.
ANSWER_DELAY_S = 20.0


def bot_comments(forge: Forge, number: int) -> list[str]:
    return [
        str(c["body"]) for c in forge.comments(OWNER, REPO, number) if c["user"] == "gantry[bot]"
    ]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
async def test_a_stop_after_the_pull_exists_leaves_exactly_one(
    forge: Forge, tmp_path: Path, stop: signal.Signals
) -> None:
    env, installation, issue = await served_repo(
        forge, tmp_path, "echo done > done.txt", "Crash after the pull"
    )
    port, log = free_port(), tmp_path / "serve.log"
    forge.state.after_create_pull.append(AfterCreate(delay=ANSWER_DELAY_S))
    first = await serve(env, port, log)
    comment = await mention(forge, port, installation, issue)
    await until(lambda: forge.pulls(OWNER, REPO), 120, "the pull request")
    first.send_signal(stop)
    await asyncio.wait_for(first.wait(), 30)
    assert len(forge.pulls(OWNER, REPO)) == 1

    second = await serve(env, port, log)
    try:
        done = lambda: any("🚀 Done" in b for b in bot_comments(forge, issue))  # noqa: E731
        await until(done, 120, "the task to end")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    [pull] = forge.pulls(OWNER, REPO)
    assert [c for c, _ in forge.reactions(comment)][-1] == "rocket", log.read_text()[-3000:]
    assert any(f"/pull/{pull.issue.number}" in b for b in bot_comments(forge, issue))
    branches = [b for b in await forge.branches(OWNER, REPO) if b.startswith("gantry/")]
    assert branches == [pull.head]  # no `-2`
