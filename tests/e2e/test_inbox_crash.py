"""A `kill -9` of `gantry serve` after it answered a delivery but before it could handle it:
the delivery is handled after the restart, into exactly one task and one PR."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from forge.localnet import free_port
from forge.server import Forge
from tests.bot.conftest import OWNER, REPO
from tests.bot.test_intake import PERMISSION_ROUTE
from tests.e2e.test_crash import mention, serve, served_repo, until


def task_count(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("select count(*) from tasks").fetchone()[0])


async def test_kill_9_between_answering_and_handling_loses_nothing(
    forge: Forge, tmp_path: Path
) -> None:
    env, installation, issue = await served_repo(
        forge, tmp_path, "echo done > done.txt", "Inbox crash test"
    )
    env["GANTRY_INBOX_RETRY_FIRST"] = "0.2"
    port, log = free_port(), tmp_path / "serve.log"
    forge.inject_fault("GET", PERMISSION_ROUTE, "error", count=None, status=502)
    first = await serve(env, port, log)
    await mention(forge, port, installation, issue)
    await until(lambda: "GitHub failed (try 1)" in log.read_text(), 30, "a first failed try")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    database = tmp_path / "data" / "gantry.db"
    assert task_count(database) == 0

    forge.clear_faults()
    second = await serve(env, port, log)
    try:
        await until(lambda: forge.pulls(OWNER, REPO), 90, "the pull request")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    assert "1 stored delivery(ies) resumed from the inbox" in log.read_text()
    assert task_count(database) == 1
    assert len(forge.pulls(OWNER, REPO)) == 1
