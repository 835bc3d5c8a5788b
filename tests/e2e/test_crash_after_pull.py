"""A stop or a crash of `gantry serve` after the PR exists (its answer still on the way), then
a restart: the task ends published, with exactly one PR."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from forge.localnet import free_port
from forge.server import Forge
from forge.state import AfterCreate
from tests.bot.conftest import OWNER, REPO, SECRET, WRITER
from tests.e2e.conftest import config_with
from tests.e2e.test_crash import serve, until
from tests.support import TEST_BASE_IMAGE

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
    source = tmp_path / "source"
    (source / ".github").mkdir(parents=True)
    (source / ".github" / "gantry.yml").write_text(config_with("echo done > done.txt"))
    await forge.create_repo(OWNER, REPO, source)
    creds = forge.register_app("gantry")
    installation = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, WRITER, "write")
    issue = forge.create_issue(OWNER, REPO, "Crash after the pull", "")
    key = tmp_path / "app.pem"
    key.write_text(creds.private_key_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")} | {
        "GANTRY_GITHUB_WEBHOOK_SECRET": SECRET,
        "GANTRY_GITHUB_APP_ID": str(creds.app_id),
        "GANTRY_GITHUB_PRIVATE_KEY_PATH": str(key),
        "GANTRY_GITHUB_API_URL": forge.api_url,
        "GANTRY_DATA_DIR": str(tmp_path / "data"),
        "GANTRY_DEFAULT_IMAGE": TEST_BASE_IMAGE,
        "GANTRY_EGRESS_PROXY_IMAGE": TEST_BASE_IMAGE,
    }
    port, log = free_port(), tmp_path / "serve.log"
    forge.state.after_create_pull.append(AfterCreate(delay=ANSWER_DELAY_S))
    first = await serve(env, port, log)
    comment = forge.add_comment(OWNER, REPO, issue.number, "@gantry survive", WRITER)
    status = await forge.send_webhook(
        f"http://127.0.0.1:{port}/webhook", SECRET, "issue_comment", "created",
        owner=OWNER, repo=REPO, installation_id=installation, sender=WRITER,
        body="@gantry survive", number=issue.number, comment_id=comment,
    )  # fmt: skip
    assert status == 200
    await until(lambda: forge.pulls(OWNER, REPO), 120, "the pull request")
    first.send_signal(stop)
    await asyncio.wait_for(first.wait(), 30)
    assert len(forge.pulls(OWNER, REPO)) == 1

    second = await serve(env, port, log)
    try:
        done = lambda: any("🚀 Done" in b for b in bot_comments(forge, issue.number))  # noqa: E731
        await until(done, 120, "the task to end")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    [pull] = forge.pulls(OWNER, REPO)
    assert [c for c, _ in forge.reactions(comment)][-1] == "rocket", log.read_text()[-3000:]
    assert any(f"/pull/{pull.issue.number}" in b for b in bot_comments(forge, issue.number))
    branches = [b for b in await forge.branches(OWNER, REPO) if b.startswith("gantry/")]
    assert branches == [pull.head]  # no `-2`
