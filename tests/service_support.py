"""The test service image: a tiny TCP server (tests/service_image/server.py) standing in for a
database, with a HEALTHCHECK; import `service_image` into a test module to use it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import docker
import pytest

from tests.support import TEST_BASE_IMAGE

SERVICE_IMAGE = "gantry-test-service:latest"
PORT = 7000
SOURCE = Path(__file__).parent / "service_image"
# The talker the task's checks run (copied into the test repositories).
TALK = (SOURCE / "talk.py").read_text()
DOCKERFILE = f"""\
FROM {TEST_BASE_IMAGE}
COPY server.py /srv/server.py
HEALTHCHECK --interval=1s --timeout=2s --retries=100 \\
  CMD python3 -c "import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)"
CMD ["python3", "-u", "/srv/server.py"]
"""


def build_context() -> io.BytesIO:
    """The build context as a tar: the Dockerfile and the server."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("Dockerfile", DOCKERFILE.encode()),
            ("server.py", (SOURCE / "server.py").read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="session")
def service_image(docker_client: docker.DockerClient) -> str:
    """The service image, built over the test base image (the engine's cache makes it quick)."""
    docker_client.images.build(
        fileobj=build_context(), custom_context=True, tag=SERVICE_IMAGE, rm=True
    )
    return SERVICE_IMAGE


def talk(host: str, *words: str, script: str = "/tmp/talk.py") -> str:
    """A shell command that sends words to a service and prints its answer."""
    return f"python3 {script} {host} {PORT} {' '.join(words)}"
