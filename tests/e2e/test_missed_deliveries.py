"""A mention sent while `gantry serve` is stopped becomes a task once it starts (read from the
App's delivery log and redelivered); one it already handled is neither redelivered nor
handled twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from forge.localnet import free_port
from forge.server import Forge
from tests.bot.conftest import OWNER, REPO, SECRET, WRITER
from tests.e2e.test_crash import serve, served_repo, until
from tests.e2e.test_inbox_crash import task_count


async def mention(forge: Forge, url: str, installation: int, issue: int, text: str) -> int:
    comment = forge.add_comment(OWNER, REPO, issue, text, WRITER)
    return await forge.send_webhook(
        url, SECRET, "issue_comment", "created",
        owner=OWNER, repo=REPO, installation_id=installation, sender=WRITER,
        body=text, number=issue, comment_id=comment,
    )  # fmt: skip


async def test_a_mention_sent_while_stopped_becomes_a_task_after_the_start(
    forge: Forge, tmp_path: Path
) -> None:
    env, installation, issue = await served_repo(forge, tmp_path, "true", "Missed while down")
    port, log = free_port(), tmp_path / "serve.log"
    url, database = f"http://127.0.0.1:{port}/webhook", tmp_path / "data" / "gantry.db"
    first = await serve(env, port, log)
    try:
        assert await mention(forge, url, installation, issue, "@gantry first") == 200
        await until(lambda: task_count(database) == 1, 30, "the first task")
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.wait(), 30)
    assert await mention(forge, url, installation, issue, "@gantry while down") == 0

    second = await serve(env, port, log)
    try:
        await until(lambda: task_count(database) == 2, 30, "the missed mention's task")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    [app_id] = forge.context.hook_logs
    entries = forge.hook_log(app_id).entries
    handled, missed, again = entries
    assert (handled.status_code, missed.status_code) == (200, 0)
    assert (again.delivery.delivery_id, again.redelivery, again.status_code) == (
        missed.delivery.delivery_id, True, 200,
    )  # fmt: skip
    assert "1 missed delivery(ies) redelivered" in log.read_text()
    assert task_count(database) == 2
