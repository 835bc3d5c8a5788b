"""Bare mirrors on the host: fetched with a per-call token, only when something is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.mirror import MirrorError, Mirrors, Tidy, auth_env, mirror_path, refspecs
from tests.runner.conftest import Origin


def git_requests(origin: Origin) -> int:
    return sum(1 for r in origin.forge.requests if ".git/" in r.path)


def files_mentioning(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_mirror_paths_stay_inside_the_data_dir(tmp_path: Path) -> None:
    assert mirror_path(tmp_path, "Acme/Widget") == tmp_path / "mirrors/acme/widget.git"
    for bad in ("../etc", "acme/..", "acme", "a/b/c", "-x/y"):
        with pytest.raises(MirrorError):
            mirror_path(tmp_path, bad)


def test_the_token_travels_in_the_environment_of_one_call() -> None:
    env = auth_env("tok123")
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert "tok123" not in env["GIT_CONFIG_VALUE_0"]
    assert refspecs("refs/pull/4/head")[-1] == "+refs/pull/4/head:refs/pull/4/head"
    assert len(refspecs("refs/heads/main")) == 2


async def test_fetches_only_when_the_commit_is_missing_and_never_stores_the_token(
    origin: Origin, tmp_path: Path
) -> None:
    mirrors = Mirrors(tmp_path / "data")
    first = await mirrors.ensure("acme/widget", origin.clone_url, origin.first_sha, origin.token)
    assert first.fetched
    requests = git_requests(origin)
    assert requests > 0
    again = await mirrors.ensure("acme/widget", origin.clone_url, origin.first_sha, origin.token)
    assert not again.fetched
    assert git_requests(origin) == requests
    new_sha = await origin.commit({"src/new.py": "print('new')\n"})
    later = await mirrors.ensure("acme/widget", origin.clone_url, new_sha, origin.token)
    assert later.fetched
    assert await mirrors.has_commit(later.path, new_sha)
    assert files_mentioning(tmp_path / "data", origin.token) == []


async def test_a_refused_fetch_is_an_error_that_does_not_echo_the_token(
    origin: Origin, tmp_path: Path
) -> None:
    mirrors = Mirrors(tmp_path / "data")
    with pytest.raises(MirrorError) as caught:
        await mirrors.ensure("acme/widget", origin.clone_url, origin.first_sha, "wrong-token")
    assert "wrong-token" not in str(caught.value)
    with pytest.raises(MirrorError, match="not a commit SHA"):
        await mirrors.ensure("acme/widget", origin.clone_url, "main", origin.token)


def loose_and_packed(path: Path) -> tuple[int, int]:
    """`git count-objects -v`: the loose objects and the packed ones."""
    out = subprocess.run(
        ["git", "--git-dir", str(path), "count-objects", "-v"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    counts = dict(line.split(": ") for line in out.splitlines())
    return int(counts["count"]), int(counts["in-pack"])


async def test_a_mirror_fetched_again_and_again_packs_its_loose_objects(
    origin: Origin, tmp_path: Path
) -> None:
    mirrors = Mirrors(tmp_path / "data")
    mirrors.tidy = Tidy(loose=32, packs=4)  # git's are 6,700 and 50: a long life, shortened
    for n in range(25):
        files = {f"src/f{k}.py": f"n = {n} * {k}\n" for k in range(8)}
        sha = await origin.commit(files)
        await mirrors.ensure("acme/widget", origin.clone_url, sha, origin.token)
    loose, packed = loose_and_packed(mirrors.path("acme/widget"))
    # 25 fetches of 8 files, a tree and a commit each: over 250 objects, never collected before.
    assert packed > 250
    assert loose < 32
    assert await mirrors.has_commit(mirrors.path("acme/widget"), origin.first_sha)
