"""The real engine runs the locally built base image: the ground every sandbox test stands on."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import docker

from tests.conftest import ContainerFactory
from tests.support import TEST_BASE_IMAGE


def test_base_image_runs_a_command(containers: ContainerFactory) -> None:
    container = containers(["bash", "-c", "echo hello from $(cat /etc/debian_version)"])
    result = container.wait(timeout=60)
    output = container.logs().decode()
    print(f"container output: {output.strip()}")
    assert result["StatusCode"] == 0
    assert output.startswith("hello from 12.")


def test_base_image_has_the_tools_the_sandbox_needs(containers: ContainerFactory) -> None:
    container = containers(
        ["bash", "-c", "git --version && python3 -c 'import venv, ssl; print(ssl.OPENSSL_VERSION)'"]
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    output = container.logs().decode()
    assert "git version 2." in output
    assert "OpenSSL" in output


def test_base_image_is_local(docker_client: docker.DockerClient) -> None:
    image = docker_client.images.get(TEST_BASE_IMAGE)
    assert image.attrs["Os"] == "linux"
    # Imported from a debootstrapped tree, not pulled: it has no registry digest.
    assert image.attrs.get("RepoDigests") == []


def test_the_engine_script_only_checks_once_set_up(docker_client: docker.DockerClient) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "docker-engine"
    started = time.monotonic()
    # Check only: never let a test restart the engine everyone's containers run on.
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"GANTRY_DOCKER_DISK_LIMIT": "0"}
    done = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    took = time.monotonic() - started
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    assert "starting dockerd" not in done.stdout  # the engine that answers is left running
    assert took < 10
    assert docker_client.ping()
