"""Host git hygiene: the server's secrets and the host's git config never reach a git child."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import host_git
from runner.mirror import MirrorError, Mirrors

PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----not-for-git"


@pytest.fixture
def hostile_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server environment with secrets, and global and system git config that runs code."""
    marker = tmp_path / "config-ran"
    home = tmp_path / "home"
    home.mkdir()
    hook = f"!touch {marker}"
    config = f"[user]\n\tname = evil\n[alias]\n\tenv = {hook}\n[core]\n\tpager = {hook}\n"
    (home / ".gitconfig").write_text(config)
    system = tmp_path / "system.gitconfig"
    system.write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(system))
    monkeypatch.setenv("GANTRY_GITHUB_PRIVATE_KEY", PRIVATE_KEY)
    monkeypatch.setenv("GANTRY_GITHUB_WEBHOOK_SECRET", "whsec-not-for-git")
    return marker


async def test_a_git_child_sees_only_its_minimal_environment(hostile_host: Path) -> None:
    seen = (await host_git.run(["-c", "alias.show-env=!env", "show-env"])).decode()
    assert PRIVATE_KEY not in seen
    assert "whsec-not-for-git" not in seen
    names = {line.split("=", 1)[0] for line in seen.splitlines() if "=" in line}
    assert "GANTRY_GITHUB_PRIVATE_KEY" not in names
    assert {"GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "HOME"} <= names
    home = next(line.split("=", 1)[1] for line in seen.splitlines() if line.startswith("HOME="))
    assert home != str(hostile_host.parent / "home")


async def test_global_and_system_git_config_are_ignored(hostile_host: Path) -> None:
    with pytest.raises(host_git.HostGitError):
        await host_git.run(["config", "--get", "user.name"])
    with pytest.raises(host_git.HostGitError):
        await host_git.run(["env"])  # the global alias does not exist for host git
    assert not hostile_host.exists()


async def test_mirror_errors_are_host_git_errors_and_never_echo_the_token(
    hostile_host: Path, tmp_path: Path
) -> None:
    mirrors = Mirrors(tmp_path / "data")
    url = "http://127.0.0.1:9/acme/widget.git"  # nothing answers on the discard port
    with pytest.raises(MirrorError) as caught:
        await mirrors.ensure("acme/widget", url, "a" * 40, "tok-not-in-errors")
    assert isinstance(caught.value, host_git.HostGitError)
    assert "tok-not-in-errors" not in str(caught.value)
    assert not hostile_host.exists()


def test_patch_work_runs_under_prlimit_and_fetches_do_not() -> None:
    bounded = host_git.command(["apply"], None, host_git.PATCH_WORK, "/usr/bin/prlimit")
    assert bounded[:2] == ["/usr/bin/prlimit", "--core=0"]
    assert f"--as={host_git.PATCH_WORK.memory_bytes}" in bounded
    assert f"--fsize={host_git.PATCH_WORK.file_bytes}" in bounded
    assert "core.hooksPath=/dev/null" in bounded
    assert host_git.command(["fetch"], None, host_git.FETCH, "prlimit")[0] == "git"
