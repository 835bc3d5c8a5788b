"""Sandbox fixtures: a unique task and repo per test; everything labelled with them goes after."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import pytest_asyncio

from forge.server import Forge
from runner.ca_certs import ExtraCa
from runner.cache import EnvironmentCache
from runner.environment import EnvironmentRequest, Environments
from runner.labels import REPO, TASK
from runner.mirror import Mirrors
from runner.network import NetworkPolicy, Networks
from runner.sandbox import Limits
from runner.tasklog import TaskLog
from tests.support import TEST_BASE_IMAGE


@dataclass(frozen=True)
class Owner:
    """The task id and repository name that a test's containers, networks and images carry."""

    task_id: str
    repo: str
    label_owner: str


def remove_labelled(client: docker.DockerClient, label: str) -> None:
    """Force-remove every container, network and image carrying a label."""
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()
    for image in client.images.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(str(image.id), force=True)


@pytest.fixture
def owner(docker_client: docker.DockerClient) -> Iterator[Owner]:
    """A fresh task id and repo; all engine objects labelled with either are removed after."""
    suffix = uuid.uuid4().hex[:10]
    found = Owner(f"test-{suffix}", f"tests/repo-{suffix}", f"tests-{suffix}")
    yield found
    remove_labelled(docker_client, f"{TASK}={found.task_id}")
    remove_labelled(docker_client, f"{REPO}={found.repo}")


@pytest.fixture
def task_log(tmp_path: Path) -> Iterator[TaskLog]:
    """A task log in the test's temporary directory."""
    log = TaskLog(tmp_path / "task.log")
    yield log
    log.close()


@dataclass
class Origin:
    """A repository on the GitHub stand-in, and a token that may fetch it."""

    forge: Forge
    owner: str
    name: str
    token: str
    first_sha: str

    @property
    def clone_url(self) -> str:
        """The URL without credentials, as a webhook payload gives it."""
        return self.forge.git_url(self.owner, self.name)

    async def commit(self, files: dict[str, str]) -> str:
        """A new commit on main; returns its SHA."""
        return await self.forge.commit_files(self.owner, self.name, "main", files)


class FakeClock:
    """A clock that tests move forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def origin(forge: Forge, tmp_path: Path) -> Origin:
    """`acme/widget` on the stand-in with one commit, the App installed, a token minted."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("widget\n")
    await forge.create_repo("acme", "widget", source)
    app = forge.register_app()
    installation = forge.install(app.app_id, "acme", ["widget"])
    heads = await forge.branches("acme", "widget")
    return Origin(forge, "acme", "widget", forge.mint_token(installation), heads["main"])


@pytest.fixture
def clock() -> FakeClock:
    """The cache's clock."""
    return FakeClock()


def make_environments(
    client: docker.DockerClient,
    data_dir: Path,
    clock: FakeClock,
    owner: Owner,
    extra_ca: ExtraCa | None = None,
) -> Environments:
    """Environments over a data directory, labelled for the test, the test image as proxy."""
    return Environments(
        client,
        Mirrors(data_dir),
        EnvironmentCache(client, clock, owner.label_owner),
        Networks(client, TEST_BASE_IMAGE, owner=owner.label_owner),
        extra_ca,
    )


@pytest.fixture
def environments(
    docker_client: docker.DockerClient, tmp_path: Path, clock: FakeClock, owner: Owner
) -> Environments:
    """Environments over a fresh data directory, using the test image for the proxy."""
    return make_environments(docker_client, tmp_path / "data", clock, owner)


def request_for(owner: Owner, origin: Origin, sha: str, **changes: Any) -> EnvironmentRequest:
    """A small, fast environment request for the test's repository."""
    values: dict[str, Any] = {
        "task_id": owner.task_id,
        "repo": owner.repo,
        "clone_url": origin.clone_url,
        "sha": sha,
        "image": TEST_BASE_IMAGE,
        "token": origin.token,
        "limits": Limits(cpus=1.0, memory=256 * 1024**2, pids=128),
        "setup_limit_s": 60.0,
        "network_setup": NetworkPolicy("off"),
    }
    return EnvironmentRequest(**(values | changes))
