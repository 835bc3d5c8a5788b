"""The slim image against the real engine and registries: automatic install, the cache,
language pinning. Installs reach npm and PyPI only by trusting GANTRY_EXTRA_CA_CERTS."""

from __future__ import annotations

import dataclasses
from typing import Any

import docker
import pytest

from config.loader import plan_commands
from config.repo_config import parse_repo_config
from runner.environment import Environment, EnvironmentRequest, Environments, from_config
from runner.languages import LanguageSelectionError
from runner.sandbox import Limits
from runner.tasklog import TaskLog
from tests.runner.conftest import Origin, Owner
from tests.support import TEST_BASE_IMAGE

PACKAGE_JSON = '{"name": "demo", "version": "1.0.0", "private": true, ' + (
    '"dependencies": {"is-number": "^7.0.0"}}\n'
)
INTEGRITY = "sha512-" + (
    "41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
)
PACKAGE_LOCK = """\
{
  "name": "demo",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {"name": "demo", "version": "1.0.0", "dependencies": {"is-number": "^7.0.0"}},
    "node_modules/is-number": {
      "version": "7.0.0",
      "resolved": "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      "integrity": "INTEGRITY",
      "engines": {"node": ">=0.12.0"}
    }
  }
}
""".replace("INTEGRITY", INTEGRITY)


async def request_for_files(
    origin: Origin, owner: Owner, image: str, files: dict[str, str], config: str = ""
) -> EnvironmentRequest:
    """Commit `files`, then plan as a task does: no setup script, so auto_install decides."""
    sha = await origin.commit(files)
    parsed = parse_repo_config(config or None)
    plan = plan_commands(parsed, (), None, ["README.md", *files])
    request = from_config(
        parsed.config,
        plan,
        (),
        task_id=owner.task_id,
        repo=owner.repo,
        clone_url=origin.clone_url,
        sha=sha,
        token=origin.token,
    )
    small = Limits(cpus=2.0, memory=1024**3, pids=512)
    return dataclasses.replace(request, image=image, limits=small, setup_limit_s=300.0)


async def agent_output(env: Environment, log: TaskLog, command: str) -> list[str]:
    """Run a command as the agent would and return its output lines (not Gantry's notes)."""
    before = len(log.tail(500))
    result = await env.run(command, log, "agent", 60)
    assert result.ok, log.tail(30)
    return [line for line in log.tail(500)[before:] if "[gantry]" not in line]


async def twice(
    environments: Environments, request: EnvironmentRequest, log: TaskLog, probe: str
) -> list[Any]:
    """Two tasks on the same request: (hit, probe output) of each."""
    seen = []
    for _ in range(2):
        async with environments.open(request, log) as env:
            seen.append((env.cache_hit, await agent_output(env, log, probe)))
    return seen


async def test_a_package_lock_alone_gets_npm_ci_and_the_cache_skips_it_next_time(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    slim_image: str,
) -> None:
    files = {"package.json": PACKAGE_JSON, "package-lock.json": PACKAGE_LOCK}
    request = await request_for_files(origin, owner, slim_image, files)
    assert request.setup == ("npm ci",)
    probe = "ls node_modules; node -e \"console.log(require('is-number')(7))\""
    first, second = await twice(environments, request, task_log, probe)
    assert first == (False, ["is-number", "true"])
    assert second == (True, ["is-number", "true"])
    text = task_log.text()
    assert "[setup] [gantry] auto_install: detected: npm ci (package-lock.json)" in text
    assert text.count("added 1 package") == 1


async def test_requirements_txt_alone_gets_pip_install_and_the_cache_skips_it_next_time(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    slim_image: str,
) -> None:
    files = {"requirements.txt": "six==1.16.0\n"}
    request = await request_for_files(origin, owner, slim_image, files)
    assert request.setup == ("pip install -r requirements.txt",)
    probe = 'python -c "import six; print(six.__version__)"'
    first, second = await twice(environments, request, task_log, probe)
    assert first == (False, ["1.16.0"])
    assert second == (True, ["1.16.0"])
    text = task_log.text()
    assert "auto_install: detected: pip install -r requirements.txt (requirements.txt)" in text
    assert text.count("Successfully installed six-1.16.0") == 1


@pytest.mark.parametrize(("wanted", "expected"), [("22", "v22."), ("20", "v20.")])
async def test_pinning_selects_the_requested_node_for_the_agent(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    slim_image: str,
    wanted: str,
    expected: str,
) -> None:
    config = f'languages: {{node: "{wanted}"}}\nauto_install: false\n'
    request = await request_for_files(origin, owner, slim_image, {"a.txt": "a\n"}, config)
    async with environments.open(request, task_log) as env:
        (version,) = await agent_output(env, task_log, "node --version")
    assert version.startswith(expected)


async def test_pinning_refuses_an_absent_version_and_lists_what_the_image_has(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    slim_image: str,
    docker_client: docker.DockerClient,
) -> None:
    config = 'languages: {node: "16", python: "3.11"}\n'
    request = await request_for_files(origin, owner, slim_image, {"a.txt": "a\n"}, config)
    with pytest.raises(LanguageSelectionError) as failure:
        await environments.prepare(request, task_log)
    message = str(failure.value)
    assert "node 16 is not in this image; it has: 20.20.2, 22.23.3" in message
    assert "[setup] gantry-select: node 16 is not in this image" in task_log.text()


async def test_an_image_without_gantry_select_cannot_pin(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    config = 'languages: {node: "20"}\n'
    request = await request_for_files(origin, owner, TEST_BASE_IMAGE, {"a.txt": "a\n"}, config)
    with pytest.raises(LanguageSelectionError, match="has no gantry-select"):
        await environments.prepare(request, task_log)
