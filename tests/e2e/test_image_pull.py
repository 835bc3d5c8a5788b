"""A task whose config names an image the host lacks pulls it first; one nobody has fails
with a report that names it and the registry's answer."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import docker

from config.settings import Settings
from gantry.local_run import run_local
from runner.labels import OWNER, deployment_owner
from tests.registry import LocalRegistry, forget, local_registry
from tests.runner.conftest import remove_labelled
from tests.support import TEST_BASE_IMAGE

__all__ = ["local_registry"]

AGENT = "cp /etc/gantry-pulled proof.txt"


def repo_naming(tmp_path: Path, image: str) -> Path:
    """A local checkout whose config names `image` and whose agent copies a file of it."""
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "gantry.yml").write_text(
        f"image: {image}\nagent: {{command: {AGENT}}}\n"
        "network: {setup: off, agent: off}\nresources: {cpus: 1, memory: 512m, pids: 256}\n"
    )
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-qm", "start")):
        subprocess.run(
            ["git", "-c", "user.name=me", "-c", "user.email=me@x", *args], cwd=root, check=True
        )
    return root


def settings_for(tmp_path: Path, registry: LocalRegistry) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        egress_proxy_image=TEST_BASE_IMAGE,
        registry_auth={registry.host: registry.login},
    )


def task_log(settings: Settings) -> str:
    [path] = (settings.data_dir / "logs").glob("local-*.log")
    return path.read_text()


async def test_a_task_pulls_the_image_its_config_names(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.push_small_image(docker_client, "task")
    settings = settings_for(tmp_path, local_registry)
    out = io.StringIO()
    try:
        code = await run_local(settings, repo_naming(tmp_path, image), "prove", "HEAD", out)
    finally:
        forget(docker_client, image)
        owner = deployment_owner(settings.effective_database_url)
        remove_labelled(docker_client, f"{OWNER}={owner}")
    assert code == 0, out.getvalue()
    [patch] = list(Path.cwd().glob("gantry-local-prove-*.patch"))
    assert "+pulled-from-the-registry" in patch.read_text()
    log = task_log(settings)
    assert f"[environment] [gantry] {image} is not on this host: pulling it" in log
    assert f"[gantry] pulled {image}" in log
    assert local_registry.login.password.get_secret_value() not in log


async def test_a_missing_image_fails_the_task_with_a_clear_report(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.image("never-pushed")
    settings = settings_for(tmp_path, local_registry)
    out = io.StringIO()
    code = await run_local(settings, repo_naming(tmp_path, image), "x", "HEAD", out)
    text = out.getvalue()
    assert code == 1, text
    expected = (
        f"failed in environment: could not pull image {image} from {local_registry.host}: "
        "the registry answered: manifest for"
    )
    assert expected in text, text
    assert "manifest unknown" in text
    assert "check the image name and tag in .github/gantry.yml" in text
