"""End to end: a check command talks to a service container under network `off`, and the
service is gone after the task."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path

import docker
from pydantic import SecretStr

from config.loader import Checkout, read_checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
from config.settings import Settings
from gantry.executors import build_executor
from gantry.local_run import local_task, resolve, run_local
from runner.labels import KIND, KIND_SERVICE, OWNER, deployment_owner
from runner.pipeline import PipelineDeps, Source, run_task
from runner.results import Conclusion
from runner.task import Task
from runner.tasklog import TaskLog
from tests.runner.conftest import remove_labelled
from tests.runner.test_attempts_run import KeepWork, Recorder
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


def project(tmp_path: Path, config: str = CONFIG) -> Path:
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "gantry.yml").write_text(config)
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


LEAK = "svc-s3cret-4c1b9e"
LEAKING_CONFIG = f"""\
image: {TEST_BASE_IMAGE}
agent: {{command: echo {LEAK} > leak.txt}}
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
services:
  db:
    image: gantry-test-service:latest
    secrets: [DB_TOKEN]
    resources: {{memory: 128m, pids: 64}}
checks: []
"""


async def test_best_of_n_never_publishes_a_service_secret(
    docker_client: docker.DockerClient, service_image: str, tmp_path: Path
) -> None:
    # Each attempt's agent writes the value of a secret only the service was given: as in a
    # single attempt, the patch is refused and nothing is published.
    root = project(tmp_path, LEAKING_CONFIG)
    settings = Settings(data_dir=tmp_path / "data", egress_proxy_image=TEST_BASE_IMAGE)
    owner = deployment_owner(settings.effective_database_url)
    sha = await resolve(root, "HEAD")
    checkout = read_checkout(root, settings)

    async def load(_task: Task, _source: Source) -> Checkout | ConfigError:
        return checkout

    async def source(_task: Task) -> Source:
        return Source(sha, None, None)

    publisher = KeepWork()
    try:
        deps = PipelineDeps(
            environments=build_executor(settings, docker_client),
            secrets=SecretStore({"*": {"DB_TOKEN": SecretStr(LEAK)}}),
            agent_command=None,
            resolve_source=source,
            load_checkout=load,
            max_attempts=2,
        )
        task = dataclasses.replace(local_task(root, "leak it", 9), best_of=2)
        tasklog = TaskLog(tmp_path / "task.log")
        try:
            result = await run_task(task, deps, Recorder(), publisher, tasklog)
        finally:
            tasklog.close()
    finally:
        remove_labelled(docker_client, f"{OWNER}={owner}")
    assert publisher.work == []
    assert result.conclusion is Conclusion.FAILED, result
    assert "secret" in (result.reason or "").lower(), result.reason
