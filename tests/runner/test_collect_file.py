"""Collect against a real container: whatever sits at the patch path, the host reads little."""

from __future__ import annotations

import docker
import pytest

from runner.collect import read_file
from runner.patch_policy import MAX_PATCH_BYTES, PatchRefusedError
from runner.sandbox import Sandbox
from tests.conftest import ContainerFactory
from tests.publish.attacks import own_peak_rss, reset_peak_rss

PATCH = "/tmp/gantry/change.patch"
MIB = 1024**2
# What this test process may grow by while refusing: far below the files it is offered.
RSS_GROWTH_LIMIT = 64 * MIB


def sandbox_with(client: docker.DockerClient, containers: ContainerFactory, script: str) -> Sandbox:
    container = containers(["sh", "-c", f"mkdir -p /tmp/gantry && {script} && sleep infinity"])
    for _ in range(100):
        code, _ = container.exec_run(["sh", "-c", f"test -e {PATCH} || test -L {PATCH}"])
        if code == 0:
            return Sandbox(client, container)
    raise AssertionError("the container did not plant its patch path")


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (f"mkdir {PATCH} && truncate -s 1G {PATCH}/big", "not a regular file"),
        (f"truncate -s 1G {PATCH}", "over the limit"),
        (f"truncate -s 50G {PATCH}", "over the limit"),
        (f"ln -s /etc/shadow {PATCH}", "not a regular file"),
        (f"mkfifo {PATCH}", "not a regular file"),
    ],
)
async def test_what_is_at_the_patch_path_is_refused_and_the_host_stays_small(
    docker_client: docker.DockerClient, containers: ContainerFactory, script: str, reason: str
) -> None:
    sandbox = sandbox_with(docker_client, containers, script)
    reset_peak_rss()
    before = own_peak_rss()
    with pytest.raises(PatchRefusedError, match=reason):
        await read_file(sandbox, PATCH, MAX_PATCH_BYTES)
    assert own_peak_rss() - before < RSS_GROWTH_LIMIT


async def test_a_regular_patch_file_is_read_whole(
    docker_client: docker.DockerClient, containers: ContainerFactory
) -> None:
    sandbox = sandbox_with(docker_client, containers, f"printf 'diff --git a/x b/x' > {PATCH}")
    assert await read_file(sandbox, PATCH, MAX_PATCH_BYTES) == b"diff --git a/x b/x"
    assert await read_file(sandbox, "/tmp/gantry/absent", MAX_PATCH_BYTES) == b""
