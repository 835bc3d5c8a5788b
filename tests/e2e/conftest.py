"""A live Gantry (intake and workers) on the stand-in and the real engine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest_asyncio
from aiohttp.test_utils import TestServer

from config.settings import Settings
from forge.server import Forge
from gantry.compose import create_app
from runner.cache import EnvironmentCache
from runner.labels import deployment_owner
from runner.task import Task, TaskState
from tests.bot.conftest import OWNER, REPO, SECRET, WRITER, Gantry
from tests.support import TEST_BASE_IMAGE

CONFIG = f"""\
image: {TEST_BASE_IMAGE}
agent:
  command: |
    printf 'fixed: %s\\n' "$GANTRY_PROMPT" > fix.txt && rm -f old.txt
    cp "$GANTRY_TASK_FILE" task.json
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
"""
AGENTS = """\
# Agents

## Testing

```sh
test -f fix.txt
```
"""
FINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}


async def wait_final(gantry: Gantry, count: int, seconds: float = 180) -> list[Task]:
    """Until `count` tasks have ended (the worker runs in the background)."""
    store = gantry.services.store
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = [t for s in FINAL for t in await store.with_state(s)]
        if len(done) >= count:
            await gantry.settle()
            return sorted(done, key=lambda t: t.id)
        await asyncio.sleep(0.2)
    raise AssertionError(f"tasks did not finish in {seconds}s")


TEST_REPOS = (f"{OWNER}/{REPO}", f"{OWNER}/second", "local/project")


@pytest_asyncio.fixture(autouse=True)
async def _no_cache_images_left(
    docker_client: docker.DockerClient, tmp_path: Path
) -> AsyncIterator[None]:
    """Every e2e test leaves no cache image behind (they would live out their 12 h TTL).

    Each deployment owns its images; the tests' deployments keep their data under
    `tmp_path / "data"`, and only theirs go (other runs on the engine keep theirs)."""
    yield
    owner = deployment_owner(Settings(data_dir=tmp_path / "data").effective_database_url)
    cache = EnvironmentCache(docker_client, owner=owner)
    for repo in TEST_REPOS:
        await cache.drop_repo(repo)


@contextlib.asynccontextmanager
async def running_gantry(
    forge: Forge, tmp_path: Path, files: Mapping[str, str], **settings: Any
) -> AsyncIterator[Gantry]:
    """The test repository with `files` on its default branch, and a Gantry serving it."""
    source = tmp_path / "source"
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    await forge.create_repo(OWNER, REPO, source)
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, WRITER, "write")
    issue = forge.create_issue(OWNER, REPO, "Fix the flaky date test", "It fails at midnight.")
    values: dict[str, Any] = {
        "github_webhook_secret": SECRET,
        "github_app_id": creds.app_id,
        "github_private_key": creds.private_key_pem,
        "github_api_url": forge.api_url,
        "data_dir": tmp_path / "data",
        "default_image": TEST_BASE_IMAGE,
        "egress_proxy_image": TEST_BASE_IMAGE,
        "public_url": "https://gantry.example",
    }
    config = Settings(**(values | settings))
    server = TestServer(create_app(config))
    await server.start_server()
    try:
        yield Gantry(forge, server, config, creds, installation_id, issue.number, 0)
    finally:
        await server.close()


@pytest_asyncio.fixture
async def live(forge: Forge, tmp_path: Path) -> AsyncIterator[Gantry]:
    files = {".github/gantry.yml": CONFIG, "AGENTS.md": AGENTS, "old.txt": "old\n"}
    async with running_gantry(forge, tmp_path, files) as gantry:
        yield gantry


async def comment_on(
    live: Gantry,
    number: int,
    body: str,
    *,
    pull: bool = False,
    repo: str = REPO,
    installation_id: int | None = None,
) -> int:
    """A writer's signed `@gantry` comment on an issue or PR, its comment in the stand-in."""
    payload = live.examples("issue_comment")[0]
    if pull:
        payload["issue"]["pull_request"] = {"url": "rewritten"}
    else:
        payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = live.forge.add_comment(OWNER, repo, number, body, WRITER)
    record = live.forge.state.issue(live.forge.repo(OWNER, repo), number)
    assert record is not None
    payload["issue"]["title"] = record.title
    payload["issue"]["body"] = record.body
    status, answer = await live.post(
        live.delivery(
            "issue_comment",
            payload,
            body=body,
            number=number,
            repo=repo,
            installation_id=installation_id,
        )
    )
    assert (status, answer) == (200, {"outcome": "queued"})
    return int(payload["comment"]["id"])


async def git_show(forge: Forge, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=forge.repo(OWNER, REPO).path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def config_with(agent: str, extra: str = "") -> str:
    """A gantry.yml for the test base image with this agent command."""
    indented = "\n".join(f"    {line}" for line in agent.splitlines())
    return (
        f"image: {TEST_BASE_IMAGE}\nagent:\n  command: |\n{indented}\n"
        "network: {setup: off, agent: off}\n"
        "resources: {cpus: 1, memory: 512m, pids: 256}\n" + extra
    )


async def set_config(live: Gantry, text: str) -> None:
    """Change the default branch's config (what every task reads)."""
    await live.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": text})


def live_containers(live: Gantry) -> list[str]:
    """This deployment's containers for the test repository that still exist."""
    owner = deployment_owner(live.settings.effective_database_url)
    client = docker.from_env()
    try:
        labels = ["gantry.managed=1", f"gantry.repo={OWNER}/{REPO}", f"gantry.owner={owner}"]
        # The list call alone: `containers.list` looks each one up after, and one being
        # removed meanwhile made that lookup fail with NotFound.
        found = client.api.containers(all=True, filters={"label": labels})
        return [str(c["Names"][0]).lstrip("/") for c in found]
    finally:
        client.close()
