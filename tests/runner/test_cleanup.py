"""Sweeping: what a killed process left behind is removed at the next start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.cache import CacheInputs, EnvironmentCache, cache_key, cache_labels, image_ref
from runner.cleanup import orphans, sweep
from runner.labels import gantry_labels
from runner.sandbox import ContainerSpec, Sandbox
from tests.runner.conftest import FakeClock, Owner
from tests.support import TEST_BASE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
CRASHING_WORKER = """
import asyncio, sys, time
import docker
from runner.labels import gantry_labels
from runner.sandbox import ContainerSpec, Limits, Sandbox

async def main():
    labels = gantry_labels(sys.argv[2], sys.argv[3], "agent", sys.argv[4])
    spec = ContainerSpec(sys.argv[1], labels,
                         Limits(1.0, 64 * 1024**2, 32))
    sandbox = await Sandbox.start(docker.from_env(), spec)
    print(sandbox.id, flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def test_orphans_are_objects_of_tasks_that_are_not_live() -> None:
    labelled = {
        "a": gantry_labels("1", "o/r", "agent"),
        "b": gantry_labels("2", "o/r", "proxy"),
        "c": gantry_labels("", "o/r", "cache"),
        "d": {},
    }
    assert orphans(labelled, live={"2"}) == ["a"]


async def test_a_container_left_by_a_killed_process_is_removed_at_the_next_start(
    docker_client: docker.DockerClient, owner: Owner, clock: FakeClock
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(CRASHING_WORKER),
        TEST_BASE_IMAGE,
        owner.task_id,
        owner.repo,
        owner.label_owner,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    orphan_id = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()
    assert docker_client.containers.get(orphan_id).status == "running"
    network = docker_client.networks.create(
        f"gantry-test-{owner.task_id}",
        labels=gantry_labels(owner.task_id, owner.repo, "network", owner.label_owner),
    )
    live_labels = gantry_labels("live-" + owner.task_id, owner.repo, "agent", owner.label_owner)
    live = await Sandbox.start(docker_client, ContainerSpec(TEST_BASE_IMAGE, live_labels))
    # Another deployment's container on the same engine is not this sweep's business.
    foreign_labels = gantry_labels(owner.task_id, owner.repo, "agent", "someone-else")
    foreign = await Sandbox.start(docker_client, ContainerSpec(TEST_BASE_IMAGE, foreign_labels))

    report = await sweep(
        docker_client,
        live={"live-" + owner.task_id},
        cache=EnvironmentCache(docker_client, clock, owner.label_owner),
    )

    assert (report.containers, report.networks) == (1, 1)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(orphan_id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(str(network.id))
    assert docker_client.containers.get(live.id).status == "running"
    assert docker_client.containers.get(foreign.id).status == "running"
    await live.remove()
    await foreign.remove()


async def test_expired_cache_images_are_collected(
    docker_client: docker.DockerClient, owner: Owner, clock: FakeClock
) -> None:
    inputs = CacheInputs(owner.repo, "sha256:base", ("true",), (), owner=owner.label_owner)
    key = cache_key(inputs)
    container = docker_client.containers.create(TEST_BASE_IMAGE, ["true"])
    try:
        container.commit(
            repository="gantry-cache",
            tag=key,
            conf={"Labels": cache_labels(inputs, key, clock.now + 10)},
        )
    finally:
        container.remove(force=True)
    cache = EnvironmentCache(docker_client, clock, owner.label_owner)
    kept = await sweep(docker_client, live=set(), cache=cache)
    assert kept.images == 0
    assert await cache.lookup(key) is not None
    clock.now += 11
    swept = await sweep(docker_client, live=set(), cache=cache)
    assert swept.images >= 1
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_ref(key))
