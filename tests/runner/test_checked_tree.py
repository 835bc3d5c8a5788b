"""The tree a check records holds every change the agent made, however quickly it made it,
and nothing a check half-wrote when it was killed at its time limit.

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


def killed_check(repo: Path, scratch: Path, command: str, first: bool) -> None:
    """A check killed mid-way, as the sandbox is at the check's time limit: `kill -9 $$` ends
    the whole script (the record after the check never runs), like the engine's kill."""
    script = check_script(f"{command}; kill -9 $$", str(repo), str(repo), str(scratch), first)
    done = subprocess.run(["/bin/sh", "-c", script], cwd=repo, check=False, capture_output=True)
    assert done.returncode == -9


def snapshotted(tmp_path: Path) -> tuple[Path, str]:
    """The repository at the round's head, snapshotted as the environment leaves it."""
    repo, head = committed(tmp_path)
    sh(f"git checkout -q --force --detach {head} && {snapshot_script(str(repo))}", repo)
    return repo, head


def checked_patch(repo: Path, head: str, scratch: Path) -> str:
    sh(collect_script(head, str(repo), str(scratch), checked=True), repo)
    return (scratch / PATCH_NAME).read_text()


def test_a_check_killed_at_its_limit_leaves_its_half_written_file_out(tmp_path: Path) -> None:
    repo, head = snapshotted(tmp_path)
    scratch = tmp_path / "scratch"
    (repo / "stamp.txt").write_text(SECOND)  # the agent's work
    sh(check_script("echo formatted > fmt.txt", str(repo), str(repo), str(scratch)), repo)
    killed_check(repo, scratch, "printf 'half' > stamp.txt", first=False)
    patch = checked_patch(repo, head, scratch)
    assert f"+{SECOND}" in patch
    assert "+formatted" in patch  # what the check before it left, as it left it
    assert "half" not in patch


def test_a_first_check_killed_leaves_the_agents_tree_not_one_the_agent_planted(
    tmp_path: Path,
) -> None:
    repo, head = snapshotted(tmp_path)
    scratch = tmp_path / "scratch"
    (repo / "stamp.txt").write_text(SECOND)
    # The agent writes a tree id of its choosing where the checks record theirs.
    planted = subprocess.run(
        ["git", "rev-parse", "HEAD~1^{tree}"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    scratch.mkdir()
    (scratch / "checked-tree").write_text(planted)
    killed_check(repo, scratch, "printf 'half' > stamp.txt", first=True)
    patch = checked_patch(repo, head, scratch)
    assert f"+{SECOND}" in patch
    assert "half" not in patch
