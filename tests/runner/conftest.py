"""Sandbox fixtures: a unique task and repo per test; everything labelled with them goes after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.labels import REPO, TASK
from runner.tasklog import TaskLog


@dataclass(frozen=True)
class Owner:
    """The task id and repository name that a test's containers, networks and images carry."""

    task_id: str
    repo: str


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
    found = Owner(task_id=f"test-{suffix}", repo=f"tests/repo-{suffix}")
    yield found
    remove_labelled(docker_client, f"{TASK}={found.task_id}")
    remove_labelled(docker_client, f"{REPO}={found.repo}")


@pytest.fixture
def task_log(tmp_path: Path) -> Iterator[TaskLog]:
    """A task log in the test's temporary directory."""
    log = TaskLog(tmp_path / "task.log")
    yield log
    log.close()
