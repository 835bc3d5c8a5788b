"""A `kill -9` of `gantry serve` mid-task, then a restart: retried, no orphan, no duplicate PR."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker

from forge.localnet import answers, free_port
from forge.server import Forge
from runner.labels import deployment_owner
from tests.bot.conftest import OWNER, REPO, SECRET, WRITER
from tests.e2e.conftest import config_with
from tests.support import TEST_BASE_IMAGE


def agent_containers(client: docker.DockerClient, owner: str) -> list[str]:
    """The agent containers of one deployment (its owner label) for the test repository."""
    labels = [
        "gantry.managed=1",
        f"gantry.repo={OWNER}/{REPO}",
        "gantry.kind=agent",
        f"gantry.owner={owner}",
    ]
    return [str(c.id) for c in client.containers.list(all=True, filters={"label": labels})]


async def served_repo(
    forge: Forge, tmp_path: Path, agent: str, title: str
) -> tuple[dict[str, str], int, int]:
    """The test repository with `agent`, the App installed, an issue, and the environment of
    a `gantry serve` subprocess for it: (env, installation id, issue number)."""
    source = tmp_path / "source"
    (source / ".github").mkdir(parents=True)
    (source / ".github" / "gantry.yml").write_text(config_with(agent))
    await forge.create_repo(OWNER, REPO, source)
    creds = forge.register_app("gantry")
    installation = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, WRITER, "write")
    issue = forge.create_issue(OWNER, REPO, title, "")
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
    return env, installation, issue.number


async def mention(forge: Forge, port: int, installation: int, issue: int) -> int:
    """A writer's signed `@gantry survive` on the issue, delivered to the server on `port`;
    the comment's id."""
    comment = forge.add_comment(OWNER, REPO, issue, "@gantry survive", WRITER)
    status = await forge.send_webhook(
        f"http://127.0.0.1:{port}/webhook", SECRET, "issue_comment", "created",
        owner=OWNER, repo=REPO, installation_id=installation, sender=WRITER,
        body="@gantry survive", number=issue, comment_id=comment,
    )  # fmt: skip
    assert status == 200
    return comment


async def serve(env: dict[str, str], port: int, log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gantry", "serve", "--port", str(port),
        env=env, stdout=out, stderr=out,
    )  # fmt: skip
    if await answers(f"http://127.0.0.1:{port}/healthz", 20):
        return proc
    raise AssertionError(f"gantry serve did not start:\n{log.read_text()}")


async def until(check: Callable[[], object], seconds: float, what: str) -> None:
    """Poll a condition (off the loop: it may call the engine) until it holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_mid_task_then_restart(
    forge: Forge, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    env, installation, issue = await served_repo(
        forge, tmp_path, "sleep 5; echo done > done.txt", "Crash test"
    )
    port, log = free_port(), tmp_path / "serve.log"
    owner = deployment_owner(f"sqlite:///{tmp_path / 'data' / 'gantry.db'}")
    first = await serve(env, port, log)
    await mention(forge, port, installation, issue)
    await until(lambda: agent_containers(docker_client, owner), 60, "the agent container")
    [orphan] = agent_containers(docker_client, owner)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert agent_containers(docker_client, owner) == [orphan]  # left running by the crash

    second = await serve(env, port, log)
    try:
        await until(lambda: forge.pulls(OWNER, REPO), 90, "the pull request")
        await until(lambda: not agent_containers(docker_client, owner), 30, "containers to go")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    assert len(forge.pulls(OWNER, REPO)) == 1
    assert orphan not in [c.id for c in docker_client.containers.list(all=True)]
    text = log.read_text()
    assert "1 interrupted task(s) retried" in text
    bot = [c["body"] for c in forge.comments(OWNER, REPO, issue) if c["user"] == "gantry[bot]"]
    assert any("🚀 Done" in body for body in bot), bot
