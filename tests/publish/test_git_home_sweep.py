"""The empty home each host git call runs in, left behind when its worker is killed with
`kill -9`, is swept when a worker starts; the home of a git call still running (in this
process or another live one) stays."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

import runner.host_git
from bot.background import Background
from bot.tokens import InstallationTokens
from config.settings import Settings
from gantry.executors import build_executor
from gantry.workers import build_runner, serving
from runner import host_git
from runner.queue import MemoryQueue
from runner.store import SQLiteTaskStore

ROOT = Path(runner.host_git.__file__).resolve().parents[1]  # this checkout, for the holders
# A host git call in another process, running until the test lets it end.
HOLDER = """\
import asyncio, sys
from runner import host_git

asyncio.run(host_git.run(["-c", "alias.hold=" + sys.argv[1], "hold"]))
"""


def holding(out: Path, release: Path) -> str:
    """A git alias that writes where it runs (its home) to `out`, then runs until `release`
    exists (a shell loop: it ends also when the git that started it was killed)."""
    out_q, release_q = shlex.quote(str(out)), shlex.quote(str(release))
    return f"!pwd > {out_q}; while [ ! -e {release_q} ]; do sleep 0.05; done"


async def home_of(out: Path) -> Path:
    """The home the holding git call runs in, once it has said so."""
    async with asyncio.timeout(30):
        # Written by a shell in another process (or under git): no Event reaches it.
        while not (out.exists() and out.read_text().strip()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    home = Path(out.read_text().strip())
    assert home.is_dir()
    return home


def git_dirs(temp: Path) -> set[Path]:
    """The `gantry-git-*` directories in the temporary directory."""
    return {p for p in temp.glob("gantry-git-*") if p.is_dir()}


def own_dir(home: Path, temp: Path) -> Path:
    """The `gantry-git-*` directory a home is (or is in)."""
    return next(p for p in (home, *home.parents) if p.parent == temp)


async def holder(temp: Path, out: Path, release: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Another Gantry process in the middle of a host git call: (it, the call's home)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        holding(out, release),
        env=os.environ | {"TMPDIR": str(temp), "PYTHONPATH": str(ROOT)},
    )
    return process, await home_of(out)


async def start_a_worker(tmp_path: Path) -> None:
    """What a worker does when it starts, then stop it again."""
    settings = Settings(data_dir=tmp_path / "data", executor="local")
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    try:
        async with aiohttp.ClientSession() as session:
            tokens = InstallationTokens(session, settings)
            runner = build_runner(settings, build_executor(settings, None), tokens, "gantry", store)
            async with serving(runner, tokens, store, MemoryQueue(), None, Background()):
                pass
    finally:
        await store.close()


async def test_a_start_sweeps_the_git_home_of_a_killed_worker_and_keeps_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    stranger = temp / "gantry-git-not-ours"  # a file of the same name is no git home
    stranger.write_text("keep me\n")
    release = tmp_path / "release"
    killed = alive = None
    ours = asyncio.create_task(
        host_git.run(["-c", "alias.hold=" + holding(tmp_path / "ours", release), "hold"])
    )
    try:
        killed, dead = await holder(temp, tmp_path / "killed", release)
        killed.kill()  # kill -9 while its git runs: no `finally` of it runs
        await killed.wait()
        assert dead.is_dir()
        alive, theirs = await holder(temp, tmp_path / "alive", release)
        mine = await home_of(tmp_path / "ours")

        left, live = own_dir(dead, temp), {own_dir(mine, temp), own_dir(theirs, temp)}
        assert git_dirs(temp) == {left, *live}

        await start_a_worker(tmp_path)

        assert git_dirs(temp) == live  # the leftover went at the start
        assert mine.is_dir()  # this process's git call goes on
        assert theirs.is_dir()  # and so does the other live process's
    finally:
        release.touch()
        await asyncio.wait_for(ours, 30)
        if alive is not None:
            assert await asyncio.wait_for(alive.wait(), 30) == 0
    assert git_dirs(temp) == set()  # the live ones removed by their own calls, as ever
    assert stranger.read_text() == "keep me\n"
