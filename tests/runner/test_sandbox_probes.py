"""Gantry's own checks after a failed command, against the real engine: what they cannot
tell is said in the task log, never reported as a verdict."""

from __future__ import annotations

import asyncio

import docker
import docker.errors

from runner.labels import gantry_labels
from runner.sandbox import ContainerSpec, ExecResult, Limits, Sandbox, running
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner
from tests.runner.test_disk_limit import VOLUME_IMAGE, committed_image
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
HOG = 'python3 -c "x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))"'
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


def hanging(program: str) -> str:
    """Put a `program` first on PATH that never ends, as an agent may leave one."""
    path = f"/usr/local/bin/{program}"
    return f"printf '#!/bin/sh\\nexec sleep 1000\\n' > {path}; chmod +x {path}"


async def bounded(sandbox: Sandbox, command: str, log: TaskLog, limit_s: float) -> ExecResult:
    """Run a command; `run` must return within a minute."""
    run = asyncio.ensure_future(sandbox.run(command, log, "checks", limit_s))
    done, _ = await asyncio.wait([run], timeout=60)
    if not done:
        run.cancel()
        await asyncio.wait([run])
    assert done, f"run() still waiting after 60s: {log.tail(3)}"
    return run.result()


async def test_a_full_volume_whose_disk_check_never_answers_is_said_to_be_unchecked(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    image = committed_image(docker_client, VOLUME_IMAGE, ["VOLUME /data"])
    async with running(docker_client, spec_of(owner, image)) as sandbox:
        sandbox.internal_limit_s = 3.0
        result = await bounded(sandbox, f"{hanging('head')}; {FILL_DATA}", task_log, 30)
    text = task_log.text()
    assert "No space left on device" in text, text  # the disk did fill
    # The command's own exit code, and neither "full" nor "not full" as a verdict.
    assert result.exit_code not in (0, None), text
    assert not result.disk_full
    assert "no answer within 3s; restarting it (which empties /data" in text, text
    assert f"[checks] [gantry] {UNCHECKED} (the check got no answer)" in text, text


async def test_an_out_of_memory_kill_whose_check_never_answers_is_still_out_of_memory(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # The restart that ends the check is what tells: the engine saw the run it ended OOM.
    async with running(docker_client, spec_of(owner, TEST_BASE_IMAGE)) as sandbox:
        sandbox.internal_limit_s = 3.0
        result = await bounded(sandbox, f"{hanging('cat')}; {HOG}", task_log, 60)
    text = task_log.text()
    assert "no answer within 3s; restarting it" in text, text
    assert result.describe() == "killed: out of memory", text


async def test_a_kill_whose_memory_check_never_answers_is_said_to_be_unchecked(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_of(owner, TEST_BASE_IMAGE)) as sandbox:
        sandbox.internal_limit_s = 3.0
        result = await bounded(sandbox, f"{hanging('cat')}; kill -9 $$", task_log, 60)
    text = task_log.text()
    assert result.describe() == "exit code 137", text
    assert "[checks] [gantry] whether the command ran out of memory could not be checked" in text


async def test_a_kill_after_an_out_of_memory_and_a_restart_is_no_out_of_memory(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # The agent's test ran out of memory and left a process running: the phase ends with a
    # restart. A check that ends with a kill of its own is not "out of memory" for it.
    async with running(docker_client, spec_of(owner, TEST_BASE_IMAGE)) as sandbox:
        agent = await bounded(sandbox, f"(sleep 1000 > /dev/null 2>&1 &); {HOG}", task_log, 60)
        await sandbox.end_phase()
        check = await bounded(sandbox, "kill -9 $$", task_log, 30)
        hog_again = await bounded(sandbox, HOG, task_log, 60)
    assert agent.oom_killed, task_log.text()
    assert check.describe() == "exit code 137", task_log.text()
    assert hog_again.oom_killed, task_log.text()  # a later one is still told


async def test_a_command_killed_at_its_time_limit_leaves_the_next_command_to_run(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # Two checks of one phase: the first never ends; the second runs all the same.
    first = "echo kept > /workspace/kept; (sleep 1000 > /dev/null 2>&1 &); sleep infinity"
    async with running(docker_client, spec_of(owner, TEST_BASE_IMAGE)) as sandbox:
        killed = await bounded(sandbox, first, task_log, 2)
        second = await bounded(sandbox, "cat /workspace/kept", task_log, 30)
        left = sandbox.container.top(ps_args="-o pid,comm")["Processes"]
    text = task_log.text()
    assert killed.timed_out
    assert killed.describe().startswith("killed at its timeout")
    assert second.ok, text
    assert "[checks] kept" in text  # the files stay
    assert "sleep" not in str(left)  # what the first left running does not
