"""The slim image (built once by scripts/universal-image, reused by tag) and CA-trusting
environments over it; the sandbox fixtures come from tests/runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.ca_certs import load_extra_ca
from runner.environment import Environments
from tests.runner.conftest import (
    FakeClock,
    Owner,
    clock,
    make_environments,
    origin,
    owner,
    task_log,
)
from tests.support import TEST_BASE_IMAGE

__all__ = ["clock", "origin", "owner", "task_log"]

SLIM_IMAGE = "gantry-universal:slim"
ROOT = Path(__file__).resolve().parents[2]
# Containers reach the registries only through a TLS-intercepting proxy that this bundle trusts.
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def slim_image(docker_client: docker.DockerClient) -> str:
    """The slim flavour, built from the test base image unless the tag exists already."""
    try:
        docker_client.images.get(SLIM_IMAGE)
    except docker.errors.ImageNotFound:
        script = ROOT / "scripts" / "universal-image"
        subprocess.run(["bash", str(script), "slim", SLIM_IMAGE, TEST_BASE_IMAGE], check=True)
    return SLIM_IMAGE


@pytest.fixture
def environments(
    docker_client: docker.DockerClient, tmp_path: Path, clock: FakeClock, owner: Owner
) -> Environments:
    """Environments that trust the host's CA bundle in every container."""
    extra_ca = load_extra_ca(HOST_BUNDLE)
    return make_environments(docker_client, tmp_path / "data", clock, owner, extra_ca)
