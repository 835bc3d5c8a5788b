"""The executing side's long-lived parts, built from the settings in one place."""

from __future__ import annotations

import logging
from typing import Any

import docker

from config.settings import Settings
from gantry.metrics import Metrics
from runner.ca_certs import load_extra_ca
from runner.cache import EnvironmentCache
from runner.environment import Environments
from runner.executor import Executor
from runner.image_pull import ImagePuller
from runner.labels import deployment_owner
from runner.local_executor import WARNING as LOCAL_WARNING
from runner.local_executor import LocalExecutor
from runner.mirror import Mirrors
from runner.network import Networks

log = logging.getLogger(__name__)


Route = tuple[str, int]


def engine_client(settings: Settings) -> docker.DockerClient | None:
    """The Docker client of the `docker` executor (None for `local`)."""
    return docker.from_env() if settings.executor == "docker" else None


def build_executor(
    settings: Settings,
    client: docker.DockerClient | None,
    gateway: Route | None = None,
    metrics: Metrics | None = None,
) -> Executor[Any]:
    """The configured executor; `gateway` is where its sandboxes reach the model gateway."""
    if client is None:
        log.warning(LOCAL_WARNING)
        url = f"http://{gateway[0]}:{gateway[1]}" if gateway is not None else None
        return LocalExecutor(Mirrors(settings.data_dir), settings.data_dir / "local", url)
    return build_environments(settings, client, gateway, metrics)


def build_environments(
    settings: Settings,
    client: docker.DockerClient,
    gateway: Route | None = None,
    metrics: Metrics | None = None,
) -> Environments:
    """Mirrors under `DATA_DIR`, the image cache and the networks, all labelled with this
    deployment's owner so that its sweeps never touch another deployment's objects."""
    owner = deployment_owner(settings.effective_database_url)
    mirrors = Mirrors(settings.data_dir)
    cache = EnvironmentCache(client, owner=owner)
    proxy_image = settings.egress_proxy_image or settings.default_image
    networks = Networks(client, proxy_image=proxy_image, owner=owner)
    extra_ca = load_extra_ca(settings.extra_ca_certs) if settings.extra_ca_certs else None
    puller = ImagePuller(client, settings.registry_auth)
    return Environments(client, mirrors, cache, networks, extra_ca, gateway, metrics, puller)
