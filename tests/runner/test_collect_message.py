"""The agent's commit messages, as collect leaves them for the host (host git, real repo)."""

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
