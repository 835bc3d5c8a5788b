"""The disk limit as an attack: a task writes 5 GiB; the host's free space must not notice."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.disk_limit import FIX, PROBE_LABELS, DiskLimitSupport, detect
from runner.idle import VOLUME_NAME
from runner.labels import gantry_labels
from runner.network import NetworkPolicy, Networks
from runner.sandbox import ContainerSpec, Limits, running
from runner.service_containers import ServiceContainers, ServiceSpec
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner
from tests.support import TEST_BASE_IMAGE, docker_required

LIMIT = 512 * 1024**2
# Others' tests write beside us on the same engine; 5 GiB unbounded would dwarf this.
MARGIN = 256 * 1024**2
ATTACK = "dd if=/dev/zero of=/workspace/big bs=1M count=5120"
# A service like a database: it runs as its own user and keeps its data in an image VOLUME.
# Made by a commit, not a build: a build's intermediate containers would leave volumes behind.
SERVICE_IMAGE = "gantry-test-disk-service:latest"
SERVICE_CHANGES = ["VOLUME /data", "USER 65534", 'CMD ["sleep", "infinity"]']
# A task image (what a repository's .github/gantry.yml names) that declares a VOLUME.
VOLUME_IMAGE = "gantry-test-disk-volume:latest"
VOLUME_ATTACK = "dd if=/dev/zero of=/data/big bs=1M count=5120"


def enforcing(client: docker.DockerClient) -> DiskLimitSupport:
    """The engine's support; an engine that cannot enforce limits fails the test in CI."""
    support = detect(client, TEST_BASE_IMAGE)
    if not support.enforced:
        reason = f"the Docker engine cannot enforce disk limits ({support.detail}); {FIX}"
        if docker_required():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return support


def backing_dirs(root: str) -> list[str]:
    """The data root, and the directory of its loop device's backing file if it has one."""
    dirs = [root]
    best = ("", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, target = line.split()[:2]
        if (root + "/").startswith(target.rstrip("/") + "/") and len(target) > len(best[1]):
            best = (device, target)
    backing = Path("/sys/block") / Path(best[0]).name / "loop" / "backing_file"
    if best[0].startswith("/dev/loop") and backing.exists():
        dirs.append(os.path.dirname(backing.read_text().strip()))
    return dirs


def free_bytes(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def spec_for(owner: Owner, disk: int | None) -> ContainerSpec:
    labels = gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner)
    return ContainerSpec(TEST_BASE_IMAGE, labels, Limits(1.0, 256 * 1024**2, 64, disk=disk))


async def test_a_5_gib_write_stops_at_the_disk_limit_and_the_host_keeps_its_space(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    dirs = backing_dirs(str(disk_engine.info()["DockerRootDir"]))
    before = [free_bytes(d) for d in dirs]
    async with running(disk_engine, spec_for(owner, LIMIT)) as sandbox:
        result = await sandbox.run(ATTACK, task_log, "agent", 600)
        during = [free_bytes(d) for d in dirs]
        # Past the limit every later command that writes fails the same way.
        again = await sandbox.run("echo more > /workspace/more", task_log, "checks", 60)
    drops = [b - d for b, d in zip(before, during, strict=True)]
    print(f"free space drop per filesystem {dict(zip(dirs, drops, strict=True))}")
    assert not result.ok
    assert result.disk_full, result
    assert result.describe() == "failed: disk limit of 512 MiB reached (exit code 1)"
    assert "[agent] [gantry] disk limit of 512 MiB reached" in task_log.text()
    assert again.disk_full
    assert all(drop <= LIMIT + MARGIN for drop in drops), drops


async def test_an_ordinary_failure_is_not_blamed_on_the_disk(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    async with running(disk_engine, spec_for(owner, LIMIT)) as sandbox:
        result = await sandbox.run(
            "head -c 100000000 /dev/zero > /workspace/some; exit 3", task_log, "checks", 60
        )
        attrs = disk_engine.api.inspect_container(sandbox.id)
    assert result.exit_code == 3
    assert not result.disk_full
    assert result.describe() == "exit code 3"
    assert attrs["HostConfig"]["StorageOpt"]["size"].isdigit()
    assert "NOT enforced" not in task_log.text()


async def test_the_limit_holds_after_end_phase(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    async with running(disk_engine, spec_for(owner, LIMIT)) as sandbox:
        await sandbox.end_phase()
        result = await sandbox.run(ATTACK, task_log, "checks", 600)
    assert result.disk_full


def test_the_probe_leaves_no_container_behind(disk_engine: docker.DockerClient) -> None:
    support = detect(disk_engine, TEST_BASE_IMAGE)
    assert support.detail
    left = disk_engine.containers.list(all=True, filters={"label": "gantry.kind=disk-probe"})
    assert left == []
    assert PROBE_LABELS["gantry.kind"] == "disk-probe"


def committed_image(client: docker.DockerClient, name: str, changes: list[str]) -> str:
    """The test base image with /data and these changes as `name` on `client`, made once per
    engine by a commit (a build's intermediate containers would leave volumes behind)."""
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        command = ["sh", "-c", "mkdir /data && chown 65534:65534 /data"]
        container = client.containers.run(TEST_BASE_IMAGE, command, detach=True)
        try:
            container.wait()
            repository, tag = name.split(":")
            container.commit(repository, tag, changes=changes)
        finally:
            container.remove(v=True, force=True)
    return name


def service_image(client: docker.DockerClient) -> str:
    """The service image on `client`."""
    return committed_image(client, SERVICE_IMAGE, SERVICE_CHANGES)


def volume_spec(client: docker.DockerClient, owner: Owner) -> ContainerSpec:
    """A task container from an image with `VOLUME /data`; memory above the disk limit, so
    the VOLUME (a tmpfs, counted as memory) fills before an OOM."""
    image = committed_image(client, VOLUME_IMAGE, ["VOLUME /data"])
    labels = gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner)
    return ContainerSpec(image, labels, Limits(1.0, 768 * 1024**2, 64, disk=LIMIT))


def volume_names(client: docker.DockerClient, container_id: str) -> set[str]:
    """The engine's volumes a container mounts for itself (not the engine's idle volume, which
    every sandbox shares and which stays: runner/idle.py)."""
    mounts = client.api.inspect_container(container_id)["Mounts"]
    return {str(m["Name"]) for m in mounts if m["Type"] == "volume" and m["Name"] != VOLUME_NAME}


def assert_no_volume_left(client: docker.DockerClient, names: set[str]) -> None:
    for name in names:
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(name)


async def test_a_task_that_writes_5_gib_into_its_image_volume_stops_at_the_disk_limit(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    spec = volume_spec(disk_engine, owner)
    dirs = backing_dirs(str(disk_engine.info()["DockerRootDir"]))
    before = [free_bytes(d) for d in dirs]
    async with running(disk_engine, spec) as sandbox:
        result = await sandbox.run(VOLUME_ATTACK, task_log, "agent", 600)
        during = [free_bytes(d) for d in dirs]
        stayed = disk_engine.containers.get(sandbox.id).exec_run(["stat", "-c", "%s", "/data/big"])
        names = volume_names(disk_engine, sandbox.id)
    drops = [b - d for b, d in zip(before, during, strict=True)]
    print(f"{stayed.output!r} stayed; free space drop {dict(zip(dirs, drops, strict=True))}")
    assert result.disk_full, result
    assert result.describe() == "failed: disk limit of 512 MiB reached (exit code 1)"
    assert "[agent] [gantry] disk limit of 512 MiB reached" in task_log.text()
    assert isinstance(stayed.output, bytes)
    assert int(stayed.output) <= LIMIT
    assert all(drop <= LIMIT + MARGIN for drop in drops), drops
    assert names  # the VOLUME was an engine volume, and it went with the container
    assert_no_volume_left(disk_engine, names)


async def test_the_volume_limit_holds_after_end_phase_and_a_commit_and_nothing_is_left(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    spec = volume_spec(disk_engine, owner)
    committed = ""
    try:
        async with running(disk_engine, spec) as sandbox:
            names = volume_names(disk_engine, sandbox.id)
            # Something left running: end_phase restarts the container through the engine.
            await sandbox.run("(sleep 600 &) ; echo kept > /data/f", task_log, "agent", 60)
            await sandbox.end_phase()
            names |= volume_names(disk_engine, sandbox.id)
            after_restart = await sandbox.run(VOLUME_ATTACK, task_log, "checks", 600)
            committed = await sandbox.commit("gantry-test-disk-commit", owner.task_id, {})
        async with running(
            disk_engine, ContainerSpec(committed, spec.labels, spec.limits)
        ) as again:
            names |= volume_names(disk_engine, again.id)
            from_commit = await again.run(VOLUME_ATTACK, task_log, "agent", 600)
    finally:
        if committed:
            disk_engine.images.remove(committed, force=True)
    assert after_restart.disk_full, after_restart
    assert from_commit.disk_full, from_commit
    assert len(names) == 2  # one per container: the restart made none
    assert_no_volume_left(disk_engine, names)


async def test_an_image_volume_is_a_tmpfs_of_the_disk_limit_in_the_task_container(
    disk_engine: docker.DockerClient, owner: Owner
) -> None:
    spec = volume_spec(disk_engine, owner)
    async with running(disk_engine, spec) as sandbox:
        container = disk_engine.containers.get(sandbox.id)
        found = container.exec_run(["grep", " /data ", "/proc/mounts"])
    assert isinstance(found.output, bytes)
    line = found.output.decode()
    assert line.split()[2] == "tmpfs", line
    assert f"size={LIMIT // 1024}k" in line, line


def written(client: docker.DockerClient, container_id: str, path: str) -> tuple[int, int]:
    """Write 5 GiB to `path` as the service itself (its own user); its exit code, the bytes
    that stayed."""
    command = f"dd if=/dev/zero of={path} bs=1M count=5120 2>/dev/null; s=$?; sync; exit $s"
    container = client.containers.get(container_id)
    result = container.exec_run(["sh", "-c", command])
    size = container.exec_run(["stat", "-c", "%s", path])
    assert result.exit_code is not None
    assert isinstance(size.output, bytes)
    return result.exit_code, int(size.output)


async def test_a_service_that_writes_5_gib_stops_at_the_disk_limit_and_the_host_keeps_its_space(
    disk_engine: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    enforcing(disk_engine)
    image = service_image(disk_engine)
    dirs = backing_dirs(str(disk_engine.info()["DockerRootDir"]))
    networks = Networks(disk_engine, TEST_BASE_IMAGE, owner=owner.label_owner)
    services = ServiceContainers(disk_engine, owner.label_owner)
    # Memory above the limit: the VOLUME (a tmpfs, counted as memory) fills before the OOM.
    spec = ServiceSpec("db", image, limits=Limits(0.5, 768 * 1024**2, 64, disk=LIMIT))
    before = [free_bytes(d) for d in dirs]
    attachment = await networks.attach(
        NetworkPolicy("off"), owner.task_id, owner.repo, services=True
    )
    ids: tuple[str, ...] = ()
    try:
        ids = await services.start((spec,), attachment, (owner.task_id, owner.repo), task_log)
        [service] = ids
        layer = written(disk_engine, service, "/tmp/big")  # its writable layer
        volume = written(disk_engine, service, "/data/big")  # its image's VOLUME
        during = [free_bytes(d) for d in dirs]
    finally:
        await services.remove(ids)
        await networks.detach(attachment)
    drops = [b - d for b, d in zip(before, during, strict=True)]
    print(f"layer {layer}, volume {volume}; free space drop {dict(zip(dirs, drops, strict=True))}")
    assert layer[0] != 0
    assert layer[1] <= LIMIT
    assert volume[0] != 0
    assert volume[1] <= LIMIT
    assert all(drop <= LIMIT + MARGIN for drop in drops), drops
    left = disk_engine.containers.list(all=True, filters={"label": f"gantry.task={owner.task_id}"})
    assert left == []
