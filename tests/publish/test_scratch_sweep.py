"""Publish scratch a `kill -9` left behind is swept when a worker starts; scratch in use (by
a task of this process or of another live one) stays."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

import runner.publish
from bot.background import Background
from bot.tokens import InstallationTokens
from config.settings import Settings
from gantry.executors import build_executor
from gantry.workers import build_runner, serving
from runner.publish import scratch_repo
from runner.queue import MemoryQueue
from runner.store import SQLiteTaskStore

ROOT = Path(runner.publish.__file__).resolve().parents[1]  # this checkout, for the holders
# A publication in another process: its scratch repository, held until the process ends.
HOLDER = """\
import asyncio, sys
from pathlib import Path
from runner.publish import scratch_repo

async def main() -> None:
    async with scratch_repo(Path(sys.argv[1])) as repo:
        print(repo, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def holder(temp: Path, mirror: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Another Gantry process in the middle of a publication: (it, its scratch repository)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(mirror),
        stdout=subprocess.PIPE,
        env=os.environ | {"TMPDIR": str(temp), "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    repo = Path(line.decode().strip())
    assert repo.is_dir()
    return process, repo


async def test_a_start_sweeps_what_a_killed_publication_left_and_keeps_what_is_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    mirror = tmp_path / "mirror.git"
    init = ["git", "init", "--quiet", "--bare", str(mirror)]
    await asyncio.to_thread(subprocess.run, init, check=True)
    stranger = temp / "gantry-publish-not-ours"  # a file of the same name is no scratch
    stranger.write_text("keep me\n")

    killed, dead = await holder(temp, mirror)
    killed.kill()  # kill -9 mid-publication: its `finally` never runs
    await killed.wait()
    assert dead.is_dir()
    alive, theirs = await holder(temp, mirror)
    try:
        async with scratch_repo(mirror) as ours:
            settings = Settings(data_dir=tmp_path / "data", executor="local")
            store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
            async with aiohttp.ClientSession() as session:
                tokens = InstallationTokens(session, settings)
                runner = build_runner(
                    settings, build_executor(settings, None), tokens, "gantry", store
                )
                async with serving(runner, tokens, store, MemoryQueue(), None, Background()):
                    assert not dead.parent.exists()  # the leftover went at the start
                    assert ours.is_dir()  # this process's publication goes on
                    assert theirs.is_dir()  # and so does the other live process's
            await store.close()
            assert (ours / "objects" / "info" / "alternates").read_text().strip()
        assert not ours.parent.exists()  # removed by its own publication, as ever
    finally:
        alive.kill()
        await alive.wait()
    assert stranger.read_text() == "keep me\n"
