"""EXECUTOR=local: the same pipeline on this host, for machines without Docker."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from pathlib import Path

import pytest

from config.settings import Settings
from gantry.local_run import run_local
from runner.local_executor import WARNING, read_capped
from runner.local_executor import run_local as run_command
from runner.patch_policy import PatchRefusedError
from runner.tasklog import TaskLog

CONFIG = """\
image: ignored-by-the-local-executor
agent:
  command: |
    echo "prompt=$GANTRY_PROMPT leak=${SERVER_ONLY:-none} team=$TEAM" > result.txt
env: {TEAM: blue}
checks: [grep -q prompt result.txt]
"""


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def project(tmp_path: Path, config: str = CONFIG) -> Path:
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "gantry.yml").write_text(config)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "add", ".")
    sh(root, "git", "-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", "start")
    return root


async def test_gantry_run_with_the_local_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_ONLY", "do-not-pass")
    root = project(tmp_path)
    out = io.StringIO()
    settings = Settings(data_dir=tmp_path / "data", executor="local")
    code = await run_local(settings, root, "say hi", "HEAD", out)
    text = out.getvalue()
    assert code == 0, text
    branch = sh(root, "git", "branch", "--list", "gantry/local-*", "--format=%(refname:short)")
    result = sh(root, "git", "show", f"{branch.strip()}:result.txt")
    assert result == "prompt=say hi leak=none team=blue\n"
    log_file = next((tmp_path / "data" / "logs").glob("local-*.log"))
    assert WARNING in log_file.read_text()
    assert list((tmp_path / "data" / "local").iterdir()) == []  # the clone is gone


async def test_services_refuse_the_local_executor_instead_of_running_without_them(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, CONFIG + "services: {db: {image: postgres:16}}\n")
    out = io.StringIO()
    settings = Settings(data_dir=tmp_path / "data", executor="local")
    assert await run_local(settings, root, "x", "HEAD", out) == 1
    assert "services (db) need the docker executor" in out.getvalue()


async def test_local_commands_are_killed_at_their_time_limit(tmp_path: Path) -> None:
    log = TaskLog(tmp_path / "log")
    result = await run_command("echo start; sleep 30", str(tmp_path), log, "agent", 0.5, {})
    assert result.timed_out
    assert result.exit_code is None
    assert "start" in log.text()


async def test_what_a_command_leaves_running_ends_with_it(tmp_path: Path) -> None:
    leak = tmp_path / "leak"
    log = TaskLog(tmp_path / "log.txt")
    script = (
        f"(while true; do echo x >> {leak}; sleep 0.05; done) >/dev/null 2>&1 & "
        f"while [ ! -s {leak} ]; do sleep 0.01; done"
    )
    result = await run_command(script, str(tmp_path), log, "agent", 30, {})
    assert result.ok
    await asyncio.sleep(0.3)
    size = leak.stat().st_size
    await asyncio.sleep(0.5)
    assert leak.stat().st_size == size


def test_the_patch_is_read_only_from_a_regular_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    link = tmp_path / "change.patch"
    link.symlink_to(secret)
    with pytest.raises(PatchRefusedError, match="not a regular file"):
        read_capped(link, 1024)
    fifo = tmp_path / "fifo.patch"
    os.mkfifo(fifo)
    with pytest.raises(PatchRefusedError, match="not a regular file"):
        read_capped(fifo, 1024)
    big = tmp_path / "big.patch"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(PatchRefusedError, match="over the limit"):
        read_capped(big, 1024)
    assert read_capped(tmp_path / "absent", 1024) == b""
