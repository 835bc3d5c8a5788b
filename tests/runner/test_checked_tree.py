"""The tree a check records holds every change the agent made, however quickly it made it.

Git trusts a file whose size, inode, mtime and ctime (to the second) match its index entry,
unless the entry is as new as the index file itself ("racily clean"): then it reads the file.
An agent that rewrites a tracked file with as many bytes within the second of the checkout
leaves exactly such a file. The checks record their tree through a copy of the index; a copy
with a new mtime made git trust the stale entry, and the rewrite never reached the patch
(a follow-up round pushed nothing). These run the container's scripts with the host's git."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from runner.collect import PATCH_NAME, check_script, collect_script, snapshot_script

FIRST, SECOND = "1796304663374234318\n", "1796304664986645053\n"


def sh(script: str, cwd: Path) -> None:
    subprocess.run(["/bin/sh", "-c", script], cwd=cwd, check=True, capture_output=True)


def committed(tmp_path: Path) -> tuple[Path, str]:
    """A repository at a first commit; the second (the round's head) changes stamp.txt."""
    repo = tmp_path / "workspace"
    repo.mkdir()
    commit = "git -c user.name=t -c user.email=t@t commit -q -a -m"
    sh(f"git init -q -b main && echo 0 > stamp.txt && git add stamp.txt && {commit} first", repo)
    (repo / "stamp.txt").write_text(FIRST)
    sh(f"{commit} second && git checkout -q --detach HEAD~1", repo)
    head = subprocess.run(
        ["git", "rev-parse", "main"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    return repo, head


def test_a_same_size_rewrite_within_the_checkouts_second_is_in_the_checked_patch(
    tmp_path: Path,
) -> None:
    repo, head = committed(tmp_path)
    scratch = tmp_path / "scratch"
    # Checkout and snapshot at the start of a second, the agent's rewrite within it, the
    # check in a later second: the order of a fast follow-up round. (Should the machine be
    # too slow to keep the first two in one second, this shows less, never a false failure.)
    time.sleep(1.02 - time.time() % 1)
    sh(f"git checkout -q --force --detach {head} && {snapshot_script(str(repo))}", repo)
    (repo / "stamp.txt").write_text(SECOND)
    time.sleep(1.02 - time.time() % 1)
    sh(check_script("true", str(repo), str(repo), str(scratch)), repo)
    sh(collect_script(head, str(repo), str(scratch), checked=True), repo)
    patch = (scratch / PATCH_NAME).read_text()
    assert f"-{FIRST}" in patch
    assert f"+{SECOND}" in patch
