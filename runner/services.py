"""The executing side's long-lived parts, built from the settings in one place."""

from __future__ import annotations

import docker

from config.settings import Settings
from runner.cache import EnvironmentCache
from runner.environment import Environments
from runner.mirror import Mirrors
from runner.network import Networks


def build_environments(settings: Settings, client: docker.DockerClient) -> Environments:
    """Mirrors under `DATA_DIR`, the image cache, and networks whose proxy runs the
    default image (it needs only python3)."""
    mirrors = Mirrors(settings.data_dir)
    cache = EnvironmentCache(client)
    networks = Networks(client, proxy_image=settings.default_image)
    return Environments(client, mirrors, cache, networks)
