"""Patch policy against patches made by real git: paths, size, secrets, workflows."""

from __future__ import annotations

import base64
import random
import subprocess
from pathlib import Path

import pytest

from runner.patch_policy import (
    AppliedChange,
    PatchPolicy,
    PatchRefusedError,
    binary_sizes,
    changed_paths,
    check_change,
    check_patch,
    expanded_size,
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


def test_a_workflow_change_is_refused_with_a_reason() -> None:
    change = AppliedChange((".github/workflows/ci.yml", "src/a.py"), 10)
    with pytest.raises(
        PatchRefusedError, match=r"\.github/workflows/ci\.yml.*workflows permission"
    ):
        check_change(change, PatchPolicy())
    check_change(change, PatchPolicy(allow_workflows=True))


def test_what_the_host_wrote_is_held_to_the_expanded_limit() -> None:
    change = AppliedChange(("big.bin",), 2000)
    with pytest.raises(PatchRefusedError, match="writes 2,000 bytes, over the limit of 1,000"):
        check_change(change, PatchPolicy(max_expanded_bytes=1000))
    check_change(change, PatchPolicy(max_expanded_bytes=2000))


def test_any_first_component_is_stripped_as_git_apply_does() -> None:
    patch = b"diff --git c/.github/workflows/x.yml i/.github/workflows/x.yml\n"
    assert changed_paths(patch) == {".github/workflows/x.yml"}


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


def test_binary_sizes_are_read_expanded_from_literal_and_delta_hunks(repo: Path) -> None:
    rng = random.Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(200_000))
    (repo / "zeros.bin").write_bytes(bytes(3_000_000))
    (repo / "noise.bin").write_bytes(noise)
    literal = diff(repo)
    assert b"literal 3000000" in literal
    assert sorted(binary_sizes(literal)) == [200_000, 3_000_000]
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "bins")
    (repo / "noise.bin").write_bytes(noise[:1000] + b"changed" + noise[1000:] + bytes(50_000))
    delta = diff(repo)
    assert b"\ndelta " in delta
    assert binary_sizes(delta) == [250_007]  # the forward hunk: the new file, not the old one


def test_a_small_patch_that_expands_past_the_limit_is_refused(repo: Path) -> None:
    (repo / "zeros.bin").write_bytes(bytes(20_000_000))
    patch = diff(repo)
    assert len(patch) < 200_000  # 100 times smaller than what it writes
    assert expanded_size(patch) >= 20_000_000
    with pytest.raises(PatchRefusedError, match=r"expands to .* over the limit of 1,000,000"):
        check_patch(patch, [], PatchPolicy(max_expanded_bytes=1_000_000))
    check_patch(patch, [], PatchPolicy(max_expanded_bytes=21_000_000))


def test_a_lying_or_corrupt_binary_hunk_is_refused() -> None:
    header = b"diff --git a/x b/x\nGIT binary patch\n"
    with pytest.raises(PatchRefusedError, match="no size"):
        expanded_size(header + b"literal 12abc\nzzz\n\n")
    with pytest.raises(PatchRefusedError, match="corrupt"):
        expanded_size(header + b"delta 40\nz!!!!!\n\n")
    huge = header + b"literal 53687091200\nA00\n\n"  # says 50 GiB: refused by what it says
    with pytest.raises(PatchRefusedError, match="expands to"):
        check_patch(huge, [], PatchPolicy())
