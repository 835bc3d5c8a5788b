"""What collect leaves for the host, and what it leaves alone (host git, a real repository)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner.collect import MESSAGE_NAME, PATCH_NAME, collect_script, snapshot_script

COMMIT = "git -c user.name=t -c user.email=t@t commit -q"


def sh(script: str, cwd: Path) -> None:
    subprocess.run(["/bin/sh", "-c", script], cwd=cwd, check=True, capture_output=True)


def workspace(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "workspace"
    repo.mkdir()
    sh(f"git init -q -b main && echo a > a.txt && git add a.txt && {COMMIT} -m base", repo)
    sh(snapshot_script(str(repo)), repo)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    )
    return repo, head.stdout.strip()


def test_no_commit_of_the_agents_leaves_no_message_file(tmp_path: Path) -> None:
    repo, head = workspace(tmp_path)
    (repo / "a.txt").write_text("b\n")
    scratch = tmp_path / "scratch"
    sh(collect_script(head, str(repo), str(scratch)), repo)
    assert "+b" in (scratch / PATCH_NAME).read_text()
    # Reading an absent file is what the host does for "no message" (`read_file` gives b"").
    assert not (scratch / MESSAGE_NAME).exists()


def test_the_agents_commit_messages_are_collected(tmp_path: Path) -> None:
    repo, head = workspace(tmp_path)
    sh(f"echo b > a.txt && {COMMIT} -am 'Fix the date test'", repo)
    scratch = tmp_path / "scratch"
    sh(collect_script(head, str(repo), str(scratch)), repo)
    assert (scratch / MESSAGE_NAME).read_text().strip() == "Fix the date test"


def test_measuring_the_change_leaves_the_workspaces_index_alone(tmp_path: Path) -> None:
    # The pipeline measures what changed before the checks (nested AGENTS.md pick theirs by
    # it); a check that runs `git diff --exit-code` must see the agent's edit all the same.
    repo, head = workspace(tmp_path)
    (repo / "a.txt").write_text("b\n")
    (repo / "new.txt").write_text("new\n")
    sh(collect_script(head, str(repo), str(tmp_path / "scratch")), repo)
    unstaged = subprocess.run(
        ["git", "diff", "--name-only"], cwd=repo, check=True, capture_output=True, text=True
    )
    assert unstaged.stdout.split() == ["a.txt"]
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True, text=True
    )
    assert status.stdout.splitlines() == [" M a.txt", "?? new.txt"]
