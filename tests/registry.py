"""A real image registry on loopback (Debian's `docker-registry`), with basic auth.

The engine treats registries on 127.0.0.0/8 as insecure by default, so plain HTTP works and
no certificate is needed. Import `local_registry` into a test module to use it."""

from __future__ import annotations

import contextlib
import io
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import docker
import docker.errors
import pytest

from config.settings import RegistryLogin
from tests.support import TEST_BASE_IMAGE, docker_required

BINARY = "docker-registry"
USER = "gantry-test"
READY_S = 30.0
# A small image of our own: one layer over the test base, and a file that proves which it is.
DOCKERFILE = f"FROM {TEST_BASE_IMAGE}\nRUN echo pulled-from-the-registry > /etc/gantry-pulled\n"
CONFIG = """\
version: 0.1
log:
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}/data
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: gantry-test
    path: {root}/htpasswd
"""


@dataclass(frozen=True)
class LocalRegistry:
    """A running registry: its address, the login it wants, and its request log."""

    host: str
    login: RegistryLogin
    log_path: Path

    def image(self, name: str, repository: str = "gantry-tests/small") -> str:
        """A fresh reference in this registry (nothing is pushed under it yet). One repository
        holds every pushed tag, so its layers are uploaded once."""
        return f"{self.host}/{repository}:{name}-{uuid.uuid4().hex[:8]}"

    def manifest_requests(self, image: str) -> int:
        """How many times an engine asked for the manifest of `image`'s tag (a pull asks once,
        and so does the push's own check)."""
        path = image.removeprefix(f"{self.host}/").replace(":", "/manifests/", 1)
        text = self.log_path.read_text(errors="replace")
        return sum(text.count(f'"{m} /v2/{path} ') for m in ("GET", "HEAD"))

    def auth(self) -> dict[str, str]:
        return {"username": self.login.username, "password": self.login.password.get_secret_value()}

    def push_small_image(self, client: docker.DockerClient, name: str) -> str:
        """Build the small image, push it here, and remove it locally; its reference."""
        reference = self.image(name)
        client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=reference, rm=True)
        for event in client.api.push(reference, stream=True, decode=True, auth_config=self.auth()):
            if "error" in event:
                raise AssertionError(f"push failed: {event['error']}")
        client.images.remove(reference, force=True)
        return reference


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{BINARY} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 (a loopback URL of our own)
            return
        except urllib.error.HTTPError:
            return  # 401: it answers, and wants credentials
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{BINARY} did not answer at {url}")


@pytest.fixture(scope="session")
def local_registry(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRegistry]:
    """`docker-registry serve` on a free loopback port with a fresh password (CI installs it)."""
    binary = shutil.which(BINARY)
    if binary is None:
        reason = f"{BINARY} is not installed (apt-get install docker-registry)"
        if docker_required():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("registry")
    password = secrets.token_urlsafe(16)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    port = _free_port()
    (root / "config.yml").write_text(CONFIG.format(root=root, port=port))
    log_path = root / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/", process)
        login = RegistryLogin(username=USER, password=password)
        yield LocalRegistry(f"127.0.0.1:{port}", login, log_path)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


def forget(client: docker.DockerClient, reference: str) -> None:
    """Remove a pulled image from the engine (its tag; shared layers stay)."""
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(reference, force=True)
