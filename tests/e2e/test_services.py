"""End to end: a check command talks to a service container under network `off`, and the
service is gone after the task."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import docker

from config.settings import Settings
from gantry.local_run import run_local
from runner.labels import KIND, KIND_SERVICE, OWNER, deployment_owner
from tests.runner.conftest import remove_labelled
from tests.service_support import TALK, service_image, talk
from tests.support import TEST_BASE_IMAGE

__all__ = ["service_image"]

CHECK = talk("db", "PING", script="talk.py") + " | grep -qx 'PONG from-the-service'"
CONFIG = f"""\
image: {TEST_BASE_IMAGE}
agent: {{command: echo done > done.txt}}
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
services:
  db:
    image: gantry-test-service:latest
    env: {{GREETING: from-the-service}}
    resources: {{memory: 128m, pids: 64}}
checks: ["{CHECK}"]
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "gantry.yml").write_text(CONFIG)
    (root / "talk.py").write_text(TALK)
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-qm", "start")):
        subprocess.run(
            ["git", "-c", "user.name=me", "-c", "user.email=me@x", *args], cwd=root, check=True
        )
    return root


async def test_a_check_talks_to_a_service_under_network_off(
    docker_client: docker.DockerClient, service_image: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", egress_proxy_image=TEST_BASE_IMAGE)
    owner = deployment_owner(settings.effective_database_url)
    out = io.StringIO()
    try:
        code = await run_local(settings, project(tmp_path), "talk", "HEAD", out)
        services = docker_client.containers.list(
            all=True, filters={"label": [f"{OWNER}={owner}", f"{KIND}={KIND_SERVICE}"]}
        )
    finally:
        remove_labelled(docker_client, f"{OWNER}={owner}")
    text = out.getvalue()
    assert code == 0, text
    escaped = CHECK.replace("|", "\\|")  # as the Markdown table writes it
    assert f"| ✅ | `{escaped}` | .github/gantry.yml:10 | 0 |" in text, text
    assert services == []  # gone with the task
    [log] = (settings.data_dir / "logs").glob("local-*.log")
    assert "[gantry] service db ready in" in log.read_text()
