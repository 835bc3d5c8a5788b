"""Attacks on the host's side of publishing: what a container hands over is judged as applied.

A fake `git` in the container, or the agent's own git config, decides the patch's bytes; these
tests hand such patches straight to the host and look at what got published, what landed on
the host's disk and how large the host's git processes grew.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import uuid
from functools import partial
from pathlib import Path

import pytest

from config.errors import GantryError
from forge.server import Forge
from runner import host_git
from runner.patch_policy import AppliedChange, PatchPolicy, PatchRefusedError, check_change
from runner.publish import applied_change, publish
from tests.publish.attacks import PeakDisk, in_fresh_process, text_patch, zeros_patch
from tests.publish.test_publish import make_patch, publication, setup

GIB = 1024**3
MIB = 1024**2


def mnemonic_patch(tmp: Path, mirror: Path, base: str) -> bytes:
    """What the agent's `git config diff.mnemonicPrefix true` makes of a workflow change."""
    work = tmp / "agent"
    subprocess.run(["git", "clone", "-q", str(mirror), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", base], check=True)
    subprocess.run(["git", "-C", str(work), "config", "diff.mnemonicPrefix", "true"], check=True)
    (work / ".github" / "workflows").mkdir(parents=True)
    (work / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs: {}\n")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    diff = ["git", "-C", str(work), "diff", "--cached", "--binary", base]
    return subprocess.run(diff, check=True, capture_output=True).stdout


async def test_mnemonic_prefixes_do_not_hide_a_workflow_change(
    forge: Forge, tmp_path: Path
) -> None:
    mirrors, _, base, _ = await setup(forge, tmp_path)
    patch = mnemonic_patch(tmp_path, mirrors.path("octo/hello"), base)
    assert patch.startswith(b"diff --git c/.github/workflows/ci.yml i/.github/workflows/ci.yml")
    change = await applied_change(mirrors.path("octo/hello"), base, patch)
    assert change.paths == (".github/workflows/ci.yml",)
    with pytest.raises(PatchRefusedError, match="workflows permission"):
        check_change(change, PatchPolicy())


@pytest.mark.parametrize(
    ("old", "new"),
    [("/dev/null", "/tmp/{name}"), ("a/../{name}", "b/../{name}"), ("/dev/null", "b/../../{name}")],
)
async def test_a_handed_over_patch_writes_nothing_outside_the_repository(
    forge: Forge, tmp_path: Path, old: str, new: str
) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    name = f"gantry-escape-{uuid.uuid4().hex}"
    patch = text_patch(old.format(name=name), new.format(name=name))
    targets = [Path("/tmp") / name, Path(tempfile.gettempdir()) / name, tmp_path / name]
    try:
        change = await applied_change(mirrors.path("octo/hello"), base, patch)
    except PatchRefusedError:
        change = None
    with contextlib.suppress(GantryError):  # refusing is one of the allowed outcomes
        await publish(publication(mirrors, base, patch, token, url))
    assert not any(target.exists() for target in targets)
    branches = await forge.branches("octo", "hello")
    if change is None:
        assert "gantry/1-fix-readme" not in branches
        return
    assert change.paths == (f"tmp/{name}",)  # `git apply -p1`: inside the repository
    bare = forge.repo("octo", "hello").path
    listing = ["ls-tree", "-r", "--name-only", branches["gantry/1-fix-readme"]]
    tree = (await host_git.run(listing, git_dir=bare)).decode().split()
    assert sorted(tree) == sorted(["README.md", f"tmp/{name}"])


async def test_a_gigabyte_of_zeros_is_refused_before_the_host_writes_it(
    forge: Forge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # publish's scratch space, watched
    patch = zeros_patch("zeros.bin", GIB)
    assert len(patch) < 2 * MIB
    with PeakDisk(tmp_path) as disk:
        error, git_rss = await in_fresh_process(
            partial(publish, publication(mirrors, base, patch, token, url))
        )
    assert error.startswith("PatchRefusedError: the change expands to 1,07")
    with pytest.raises(PatchRefusedError, match="expands to"):
        await applied_change(mirrors.path("octo/hello"), base, patch)
    assert "gantry/1-fix-readme" not in await forge.branches("octo", "hello")
    assert disk.peak < 20 * MIB
    assert git_rss < 100 * MIB


async def test_host_git_stays_bounded_even_if_the_estimate_were_wrong(tmp_path: Path) -> None:
    repo = tmp_path / "scratch.git"
    await host_git.run(["init", "--quiet", "--bare", str(repo)])
    await host_git.run(["read-tree", "--empty"], git_dir=repo)
    patch_file = tmp_path / "zeros.patch"
    patch_file.write_bytes(zeros_patch("zeros.bin", GIB))
    apply = ["apply", "--cached", "--binary", str(patch_file)]
    call = partial(host_git.run, apply, git_dir=repo, limits=host_git.PATCH_WORK)
    error, git_rss = await in_fresh_process(call)
    assert error.startswith("HostGitError: git apply")
    assert "Out of memory" in error or "stopped by" in error
    assert git_rss < 300 * MIB  # unbounded, this git reached 2.1 GB


async def test_a_hundred_mebibytes_still_applies_under_the_limits(tmp_path: Path) -> None:
    repo = tmp_path / "scratch.git"
    await host_git.run(["init", "--quiet", "--bare", str(repo)])
    await host_git.run(["read-tree", "--empty"], git_dir=repo)
    patch_file = tmp_path / "zeros.patch"
    patch_file.write_bytes(zeros_patch("zeros.bin", 100 * MIB))
    apply = ["apply", "--cached", "--binary", str(patch_file)]
    await host_git.run(apply, git_dir=repo, limits=host_git.PATCH_WORK)
    listing = await host_git.run(["ls-files", "-s"], git_dir=repo)
    assert listing.decode().endswith("\tzeros.bin\n")


async def test_the_host_measures_paths_and_bytes_of_what_it_applied(
    forge: Forge, tmp_path: Path
) -> None:
    mirrors, _, base, _ = await setup(forge, tmp_path)
    mirror = mirrors.path("octo/hello")
    patch = make_patch(tmp_path, mirror, base, {"a.txt": "a" * 3000, "README.md": "# hi\n"})
    change = await applied_change(mirror, base, patch)
    assert change == AppliedChange(("README.md", "a.txt"), 3000 + 5)
    limit = PatchPolicy(max_expanded_bytes=3000)
    with pytest.raises(PatchRefusedError, match="writes 3,005 bytes"):
        check_change(change, limit)
