"""Shared fixtures: a clean environment, and the real Docker engine (required in CI)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from requests.exceptions import RequestException

from tests import postgres
from tests.support import TEST_BASE_IMAGE, docker_required

pytest_plugins = ["forge.pytest_plugin"]

ContainerFactory = Callable[..., Container]


@pytest.fixture(autouse=True)
def _clean_gantry_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests build settings explicitly: no GANTRY_* variable or .env of the developer leaks in."""
    for name in list(os.environ):
        if name.startswith("GANTRY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _unavailable(reason: str) -> None:
    """Skip on a laptop; fail in CI, where a missing engine must never pass silently."""
    if docker_required():
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the real engine, with the test base image present."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, RequestException) as exc:
        _unavailable(f"no Docker engine answers ({exc})")
        raise AssertionError("unreachable") from exc
    try:
        client.images.get(TEST_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        client.close()
        _unavailable(f"the test base image {TEST_BASE_IMAGE} is missing (run scripts/base-image)")
    yield client
    client.close()


# Where CI runs an engine that enforces disk limits (btrfs quotas slow every container down,
# so the main engine stays fast and only the disk-limit tests use this one).
DISK_ENGINE_ENV = "DISK_TEST_DOCKER_HOST"


@pytest.fixture(scope="session")
def disk_engine(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The engine of the disk-limit tests: `DISK_TEST_DOCKER_HOST`, else the main one."""
    url = os.environ.get(DISK_ENGINE_ENV)
    if not url:
        yield docker_client
        return
    client = docker.DockerClient(base_url=url, timeout=120)
    try:
        client.images.get(TEST_BASE_IMAGE)
    except (docker.errors.DockerException, RequestException) as exc:
        client.close()
        _unavailable(f"the disk-limit engine at {url} cannot run tests ({exc})")
    yield client
    client.close()


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[ContainerFactory]:
    """Start containers that are force-removed after the test, whatever happens."""
    started: list[Container] = []

    def run(command: str | list[str], **kwargs: Any) -> Container:
        kwargs.setdefault("labels", {})["gantry.test"] = "1"
        container = docker_client.containers.create(TEST_BASE_IMAGE, command, **kwargs)
        started.append(container)
        container.start()
        return container

    yield run
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the engine is marked `docker`, so `-m "not docker"` selects the rest."""
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server (skips without one on a laptop; fails in CI)."""
    try:
        with postgres.server() as url:
            yield url
    except postgres.PostgresUnavailableError as exc:
        _unavailable(str(exc))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database of its own for one test."""
    with postgres.fresh_database(postgres_server) as url:
        yield url
