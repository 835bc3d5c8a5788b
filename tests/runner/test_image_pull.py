"""Pulling missing images: progress lines, reports, credentials, one pull for many tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from config.settings import RegistryLogin
from runner.image_pull import (
    CREDENTIALS_FIX,
    NAME_FIX,
    ImagePuller,
    ImagePullError,
    PullProgress,
    failure_report,
    login_for,
    registry_of,
)
from runner.tasklog import TaskLog
from tests.registry import LocalRegistry, forget, local_registry

__all__ = ["local_registry"]

LOGIN = RegistryLogin(username="u", password="s3cret-pass")


def test_registry_of_names_the_host_or_docker_hub() -> None:
    assert registry_of("postgres:16") == "docker.io"
    assert registry_of("ghcr.io/acme/dev:2026-11") == "ghcr.io"
    assert registry_of("127.0.0.1:5000/x/y@sha256:" + "a" * 64) == "127.0.0.1:5000"


def test_logins_are_found_however_the_registry_is_written() -> None:
    logins = {"https://index.docker.io/v1/": LOGIN, "GHCR.io": LOGIN}
    assert login_for("postgres:16", logins) is LOGIN
    assert login_for("ghcr.io/acme/dev", logins) is LOGIN
    assert login_for("quay.io/acme/dev", logins) is None


def test_progress_is_a_few_lines_not_every_event() -> None:
    now = [0.0]
    progress = PullProgress("img:1", clock=lambda: now[0], every_s=2.0)
    lines: list[str] = []
    lines += progress.feed({"status": "Pulling from acme/img", "id": "1"})
    lines += progress.feed({"status": "Pulling fs layer", "id": "aaa"})
    for current in range(0, 100, 10):
        now[0] += 0.5
        detail = {"current": current * 1024**2, "total": 100 * 1024**2}
        lines += progress.feed({"status": "Downloading", "id": "aaa", "progressDetail": detail})
    lines += progress.feed({"status": "Pull complete", "id": "aaa"})
    lines += progress.feed({"status": "Status: Downloaded newer image for img:1"})
    assert lines[0] == "[gantry] pull img:1: Pulling from acme/img"
    busy = [line for line in lines if "busy" in line]
    # 5 s of downloading, one line at most every 2 s.
    assert 2 <= len(busy) <= 3
    assert busy[-1].endswith("of 100 MiB")
    assert "[gantry] pull img:1: layer aaa: pull complete" in lines
    assert lines[-1].endswith("Downloaded newer image for img:1")
    assert not any("Pulling fs layer" in line for line in lines)


def test_a_report_names_the_image_the_answer_and_a_fix() -> None:
    missing = failure_report("ghcr.io/acme/nope:1", "manifest unknown: manifest unknown")
    assert missing.startswith("could not pull image ghcr.io/acme/nope:1 from ghcr.io")
    assert "the registry answered: manifest unknown" in missing
    assert NAME_FIX in missing
    refused = failure_report("ghcr.io/a/b", "unauthorized: bad s3cret-pass", ["s3cret-pass"])
    assert CREDENTIALS_FIX in refused
    assert "s3cret-pass" not in refused


@pytest.fixture
def pushed(
    docker_client: docker.DockerClient, local_registry: LocalRegistry
) -> Iterator[list[str]]:
    """References pushed for a test (each removed locally), forgotten again afterwards."""
    made: list[str] = []
    yield made
    for reference in made:
        forget(docker_client, reference)


def log_at(path: Path) -> TaskLog:
    return TaskLog(path)


async def test_a_missing_image_is_pulled_with_progress_and_credentials(
    docker_client: docker.DockerClient,
    local_registry: LocalRegistry,
    pushed: list[str],
    tmp_path: Path,
) -> None:
    image = local_registry.push_small_image(docker_client, "pulled")
    pushed.append(image)
    puller = ImagePuller(docker_client, {local_registry.host: local_registry.login})
    assert not await puller.present(image)
    log = log_at(tmp_path / "task.log")
    pushed_only = local_registry.manifest_requests(image)
    await puller.ensure(image, log)
    assert await puller.present(image)
    text = log.text()
    assert f"{image} is not on this host: pulling it" in text
    assert f"pull {image}: Status: Downloaded newer image for {image}" in text
    assert f"[gantry] pulled {image}" in text
    assert local_registry.login.password.get_secret_value() not in text
    # Present now: nothing more is pulled or logged.
    before = local_registry.manifest_requests(image)
    assert before > pushed_only  # it came from the registry
    await puller.ensure(image, log)
    assert local_registry.manifest_requests(image) == before


async def test_tasks_needing_one_image_at_once_pull_it_once(
    docker_client: docker.DockerClient,
    local_registry: LocalRegistry,
    pushed: list[str],
    tmp_path: Path,
) -> None:
    alone, shared = (local_registry.push_small_image(docker_client, n) for n in ("a", "b"))
    pushed += [alone, shared]
    puller = ImagePuller(docker_client, {local_registry.host: local_registry.login})
    before = local_registry.manifest_requests(alone)
    await puller.ensure(alone, log_at(tmp_path / "alone.log"))
    one_pull = local_registry.manifest_requests(alone) - before
    assert one_pull >= 1
    logs = [log_at(tmp_path / f"task{n}.log") for n in range(3)]
    before = local_registry.manifest_requests(shared)
    await asyncio.gather(*(puller.ensure(shared, log) for log in logs))
    assert local_registry.manifest_requests(shared) - before == one_pull
    texts = [log.text() for log in logs]
    assert sum("pulling it" in text for text in texts) == 1
    assert sum("being pulled for another task: waiting" in text for text in texts) == 2
    assert all(f"[gantry] pulled {shared}" in text for text in texts)


async def test_a_missing_image_fails_with_the_registrys_answer(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.image("never-pushed")
    puller = ImagePuller(docker_client, {local_registry.host: local_registry.login})
    log = log_at(tmp_path / "task.log")
    with pytest.raises(ImagePullError) as info:
        await puller.ensure(image, log)
    report = str(info.value)
    assert report.startswith(f"could not pull image {image} from {local_registry.host}")
    assert "manifest unknown" in report
    assert NAME_FIX in report
    assert report in log.text()
    with pytest.raises(ImagePullError, match="manifest unknown"):
        await puller.lookup(image)


async def test_wrong_or_missing_credentials_are_reported_without_the_password(
    docker_client: docker.DockerClient,
    local_registry: LocalRegistry,
    pushed: list[str],
    tmp_path: Path,
) -> None:
    image = local_registry.push_small_image(docker_client, "private")
    pushed.append(image)
    wrong = RegistryLogin(username="gantry-test", password="not-the-password")
    logins: dict[str, RegistryLogin]
    for logins in ({}, {local_registry.host: wrong}):
        log = log_at(tmp_path / f"task-{len(logins)}.log")
        with pytest.raises(ImagePullError) as info:
            await ImagePuller(docker_client, logins).ensure(image, log)
        report = str(info.value)
        assert CREDENTIALS_FIX in report, report
        assert "not-the-password" not in report + log.text()
    assert not await ImagePuller(docker_client).present(image)


async def test_the_doctor_lookup_finds_a_pushed_image_without_pulling_it(
    docker_client: docker.DockerClient,
    local_registry: LocalRegistry,
    pushed: list[str],
) -> None:
    image = local_registry.push_small_image(docker_client, "looked-up")
    pushed.append(image)
    puller = ImagePuller(docker_client, {local_registry.host: local_registry.login})
    digest = await puller.lookup(image)
    assert digest.startswith("sha256:")
    assert not await puller.present(image)


@pytest_asyncio.fixture
async def silent_registry() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A loopback 'registry' that takes connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", held
    server.close()
    for writer in held:
        writer.close()
    await server.wait_closed()


async def test_a_registry_that_never_answers_fails_the_pull_at_its_limit(
    docker_client: docker.DockerClient,
    silent_registry: tuple[str, list[asyncio.StreamWriter]],
    tmp_path: Path,
) -> None:
    host, held = silent_registry
    image = f"{host}/gantry-tests/silent:1"
    puller = ImagePuller(docker_client, limit_s=2.0)
    log = log_at(tmp_path / "task.log")
    with pytest.raises(ImagePullError) as info:
        await puller.ensure(image, log)
    assert str(info.value).startswith(f"could not pull image {image} from {host}")
    assert "no answer within 2s" in str(info.value)
    assert "cannot be reached" in str(info.value)
    assert held  # the engine did ask
    # The registry goes away: the pull ends too, and the next task starts a fresh one.
    for writer in held:
        writer.close()
    await puller.settle()
    with pytest.raises(ImagePullError, match="could not pull image"):
        await puller.ensure(image, log)
    await puller.settle()
