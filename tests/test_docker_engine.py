"""The real engine runs the locally built base image: the ground every sandbox test stands on."""

from __future__ import annotations

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
