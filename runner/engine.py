"""The Docker engine: reach it and say which one it is."""

from __future__ import annotations

import docker
import docker.errors
from requests.exceptions import RequestException

from config.errors import GantryError

DOCKER_TIMEOUT_S = 10


class EngineUnavailableError(GantryError):
    """No Docker engine answers."""


def docker_version(timeout: int = DOCKER_TIMEOUT_S) -> dict[str, str]:
    """The engine's version record; blocking, so call it off the event loop."""
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return dict(client.version())
        finally:
            client.close()
    except (docker.errors.DockerException, RequestException) as exc:
        raise EngineUnavailableError(str(exc)) from exc
