"""Gantry's own checks after a failed command, against the real engine: what they cannot
tell is said in the task log, never reported as a verdict."""

from __future__ import annotations

import docker
import docker.errors

from runner.labels import gantry_labels
from runner.sandbox import ContainerSpec, Limits, running
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner
from tests.support import TEST_BASE_IMAGE

# The test base image with `VOLUME /data` (a tmpfs of the disk limit, probed on every engine)
# and without `mktemp`, as a minimal image may come.
NO_MKTEMP_IMAGE = "gantry-test-no-mktemp:latest"
NO_MKTEMP = 'mkdir /data && rm "$(command -v mktemp)"'
# An image whose user is not root (nor the owner of `/`).
NOBODY_IMAGE = "gantry-test-nobody:latest"
# Memory above the disk limit: the VOLUME (a tmpfs, counted as memory) fills before an OOM.
LIMITS = Limits(cpus=1.0, memory=256 * 1024**2, pids=64, disk=32 * 1024**2)
FILL_DATA = "dd if=/dev/zero of=/data/big bs=1M count=64"
UNCHECKED = "whether the disk limit was reached could not be checked"


def committed(
    client: docker.DockerClient, name: str, command: str, changes: tuple[str, ...] = ()
) -> str:
    """The test base image after a shell command, as `name` on `client`, made once per engine
    by a commit (a build's intermediate containers would leave volumes behind)."""
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        container = client.containers.run(TEST_BASE_IMAGE, ["sh", "-c", command], detach=True)
        try:
            assert container.wait()["StatusCode"] == 0, container.logs()
            repository, tag = name.split(":")
            container.commit(repository, tag, changes=list(changes))
        finally:
            container.remove(v=True, force=True)
    return name


def spec_of(owner: Owner, image: str, limits: Limits = LIMITS) -> ContainerSpec:
    labels = gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner)
    return ContainerSpec(image=image, labels=labels, limits=limits)


async def test_a_full_disk_in_an_image_without_mktemp_is_said_to_be_unchecked(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    image = committed(docker_client, NO_MKTEMP_IMAGE, NO_MKTEMP, ("VOLUME /data",))
    async with running(docker_client, spec_of(owner, image)) as sandbox:
        result = await sandbox.run(FILL_DATA, task_log, "checks", 60)
    text = task_log.text()
    assert result.exit_code not in (0, None), text
    assert "No space left on device" in text, text  # the disk did fill
    # Not a verdict either way: exit code kept, and the log tells why it may have failed.
    assert not result.disk_full
    assert result.describe() == f"exit code {result.exit_code}"
    assert f"[checks] [gantry] {UNCHECKED} (the image has no `mktemp` or `head`)" in text, text


async def test_a_failed_command_of_an_image_that_runs_as_another_user_is_no_full_disk(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # The layer (`/`, probed where the engine enforces its size) is root's: nobody may write
    # there, whatever room is left.
    image = committed(disk_engine, NOBODY_IMAGE, "mkdir -m 777 /workspace", ("USER 65534",))
    async with running(disk_engine, spec_of(owner, image)) as sandbox:
        result = await sandbox.run("echo failing; exit 1", task_log, "checks", 60)
    text = task_log.text()
    assert (result.exit_code, result.disk_full) == (1, False), text
    assert "disk limit of 32 MiB reached" not in text
    assert f"[checks] [gantry] {UNCHECKED} (the container's user may not write there)" in text
