"""`gantry run`: the same pipeline on a local checkout, leaving a branch and a patch file."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import docker

from config.settings import Settings
from gantry.local_run import run_local
from tests.e2e.conftest import config_with
from tests.support import TEST_BASE_IMAGE

AGENTS = "# Agents\n\n## Checks\n\n```sh\ngrep -q hello greeting.txt\n```\n"


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def local_repo(tmp_path: Path, agent: str) -> Path:
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "gantry.yml").write_text(config_with(agent))
    (root / "AGENTS.md").write_text(AGENTS)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "add", ".")
    sh(root, "git", "-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", "start")
    return root


async def test_gantry_run_leaves_a_branch_and_a_patch(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    root = local_repo(tmp_path, 'echo "hello from $GANTRY_PROMPT" > greeting.txt')
    out = io.StringIO()
    settings = Settings(data_dir=tmp_path / "data", egress_proxy_image=TEST_BASE_IMAGE)
    code = await run_local(settings, root, "the agent", "HEAD", out)
    text = out.getvalue()
    assert code == 0, text
    for phase in ("prepare", "environment", "agent", "checks", "collect", "publish"):
        assert f"✓ {phase}" in text
    assert "| ✅ | `grep -q hello greeting.txt` | AGENTS.md:6 | 0 |" in text
    branches = sh(root, "git", "branch", "--list", "gantry/local-*", "--format=%(refname:short)")
    name = branches.strip()
    assert name.startswith("gantry/local-the-agent-")
    assert sh(root, "git", "show", f"{name}:greeting.txt") == "hello from the agent\n"
    assert sh(root, "git", "status", "--porcelain") == ""  # the working tree is untouched
    [patch] = list(Path.cwd().glob("gantry-local-the-agent-*.patch"))
    assert "+hello from the agent" in patch.read_text()


async def test_gantry_run_reports_a_failing_agent(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    root = local_repo(tmp_path, "echo broken >&2; exit 4")
    out = io.StringIO()
    code = await run_local(
        Settings(data_dir=tmp_path / "data", egress_proxy_image=TEST_BASE_IMAGE),
        root,
        "x",
        "HEAD",
        out,
    )
    assert code == 1
    assert "failed in agent: the agent exit code 4" in out.getvalue()
    assert "broken" in out.getvalue()
