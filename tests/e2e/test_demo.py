"""The README's demo, end to end: `python -m forge.demo` as `scripts/demo` runs it, with the
real Codex CLI in the agents image driven by the model stand-in through the gateway."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from config.settings import Settings
from forge.demo import OWNER, REPO
from runner.cache import EnvironmentCache
from runner.labels import deployment_owner
from tests.images.test_agent_clis import agents_image

__all__ = ["agents_image"]  # the session fixture that builds the image

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 240


@pytest.fixture
def work(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Path]:
    """The demo's directory; its deployment's cache image goes with the test."""
    work = tmp_path / "demo"
    yield work
    owner = deployment_owner(Settings(data_dir=work / "data").effective_database_url)
    cache = EnvironmentCache(docker_client, owner=owner)
    asyncio.run(cache.drop_repo(f"{OWNER}/{REPO}"))


def test_the_demo_prints_a_pull_request_with_the_model_stand_ins_edit(
    agents_image: str, work: Path
) -> None:
    command = [sys.executable, "-m", "forge.demo", "--agents-image", agents_image]
    command += ["--timeout", "180", "--work", str(work)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    diff = out.split("==> Its diff", 1)[1].split("==> The progress comment", 1)[0]
    # The stand-in's scripted tool call, made by the real Codex CLI: hello.py rewritten, and
    # the test appended.
    assert "+def farewell(name):" in diff
    assert "+    return f'Goodbye, {name}!'" in diff
    assert "+class FarewellTest(unittest.TestCase):" in diff
    assert "the agent is the real Codex CLI" in out
    assert "each carrying the operator's key (yes)" in out
    assert "🤖 codex (gpt-5-codex) · model gpt-5-codex" in out
