"""Patch policy against patches made by real git: paths, size, secrets, workflows."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from runner.patch_policy import (
    PatchPolicy,
    PatchRefusedError,
    changed_paths,
    check_patch,
    unquote,
)


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-c", "core.quotePath=true", *args], cwd=repo, check=True, capture_output=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "keep.txt").write_text("keep\n")
    (tmp_path / "old name.txt").write_text("moving\n" * 20)
    (tmp_path / "gone.txt").write_text("bye\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "base")
    return tmp_path


def diff(repo: Path) -> bytes:
    git(repo, "add", "-A")
    return git(repo, "diff", "--cached", "--binary", "-M", "HEAD")


def test_paths_of_every_kind_of_change(repo: Path) -> None:
    (repo / "keep.txt").write_text("changed\n")
    (repo / "old name.txt").rename(repo / "new name.txt")
    (repo / "gone.txt").unlink()
    (repo / "tést ünïcode.txt").write_text("é\n")
    (repo / "bin.dat").write_bytes(bytes(range(256)))
    (repo / "script.sh").write_text("#!/bin/sh\n")
    (repo / "script.sh").chmod(0o755)
    assert changed_paths(diff(repo)) == {
        "keep.txt",
        "old name.txt",
        "new name.txt",
        "gone.txt",
        "tést ünïcode.txt",
        "bin.dat",
        "script.sh",
    }


def test_unquote_handles_gits_escapes() -> None:
    assert unquote('"t\\303\\251st\\ttab\\"q\\\\"') == 'tést\ttab"q\\'
    assert unquote("plain") == "plain"


def test_a_workflow_change_is_refused_with_a_reason(repo: Path) -> None:
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    patch = diff(repo)
    with pytest.raises(
        PatchRefusedError, match=r"\.github/workflows/ci\.yml.*workflows permission"
    ):
        check_patch(patch, [], PatchPolicy())
    check_patch(patch, [], PatchPolicy(allow_workflows=True))


def test_a_secret_value_is_refused_raw_or_base64(repo: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    (repo / "keep.txt").write_text(f"token = {secret}\n")
    with pytest.raises(PatchRefusedError, match="value of a secret") as info:
        check_patch(diff(repo), [secret], PatchPolicy())
    assert secret not in str(info.value)
    (repo / "keep.txt").write_text(base64.b64encode(secret.encode()).decode() + "\n")
    with pytest.raises(PatchRefusedError):
        check_patch(diff(repo), [secret], PatchPolicy())


def test_the_size_limit(repo: Path) -> None:
    (repo / "big.txt").write_text("x" * 5000)
    patch = diff(repo)
    with pytest.raises(PatchRefusedError, match="over the limit"):
        check_patch(patch, [], PatchPolicy(max_bytes=1000))
    check_patch(patch, [], PatchPolicy(max_bytes=len(patch)))


def test_tiny_secrets_do_not_refuse_everything(repo: Path) -> None:
    (repo / "keep.txt").write_text("a\n")
    check_patch(diff(repo), ["a"], PatchPolicy())
