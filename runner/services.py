"""The executing side's long-lived parts, built from the settings in one place."""

from __future__ import annotations

import logging
from typing import Any

import docker

from config.settings import Settings
from runner.ca_certs import load_extra_ca
from runner.cache import EnvironmentCache
from runner.environment import Environments
from runner.executor import Executor
from runner.labels import deployment_owner
from runner.local_executor import WARNING as LOCAL_WARNING
from runner.local_executor import LocalExecutor
from runner.mirror import Mirrors
from runner.network import Networks

log = logging.getLogger(__name__)


def build_executor(settings: Settings) -> tuple[Executor[Any], docker.DockerClient | None]:
    """The configured executor, and the Docker client it holds (None for `local`)."""
    if settings.executor == "local":
        log.warning(LOCAL_WARNING)
        executor = LocalExecutor(Mirrors(settings.data_dir), settings.data_dir / "local")
        return executor, None
    client = docker.from_env()
    return build_environments(settings, client), client


def build_environments(settings: Settings, client: docker.DockerClient) -> Environments:
    """Mirrors under `DATA_DIR`, the image cache and the networks, all labelled with this
    deployment's owner so that its sweeps never touch another deployment's objects."""
    owner = deployment_owner(settings.effective_database_url)
    mirrors = Mirrors(settings.data_dir)
    cache = EnvironmentCache(client, owner=owner)
    proxy_image = settings.egress_proxy_image or settings.default_image
    networks = Networks(client, proxy_image=proxy_image, owner=owner)
    extra_ca = load_extra_ca(settings.extra_ca_certs) if settings.extra_ca_certs else None
    return Environments(client, mirrors, cache, networks, extra_ca)
