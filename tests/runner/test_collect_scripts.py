"""What collect leaves for the host, and what it leaves alone (host git, a real repository)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runner.collect import (
    MESSAGE_NAME,
    PATCH_NAME,
    UNBORN_EXIT,
    UNBORN_NAME,
    collect_script,
    snapshot_script,
    unborn_refusal,
)

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


def on_base(repo: Path, base: str, patch: Path) -> dict[str, str]:
    """The patch applied as the host does, on the task's commit: the files it then holds."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo.parent / "host.index")}

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    git("read-tree", base)
    git("apply", "--cached", "--binary", str(patch))
    entries = [e for e in git("ls-files", "-s", "-z").split("\0") if e]
    blobs = {e.split("\t", 1)[1]: e.split()[1] for e in entries}
    return {name: git("cat-file", "blob", sha) for name, sha in blobs.items()}


def test_what_setup_left_is_published_in_the_terms_of_the_tasks_commit(tmp_path: Path) -> None:
    repo, base = workspace(tmp_path)
    sh(f"printf 'x==1\\n' > lock.txt && git add lock.txt && {COMMIT} -m lock", repo)
    base = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    # Setup (a fresh build): output it leaves untracked, and an edit of a tracked lock file.
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("generated\n")
    (repo / "gen.txt").write_text("v1\n")
    (repo / "lock.txt").write_text("x==1.0\n")
    sh(snapshot_script(str(repo)), repo)
    # The agent ignores build/, regenerates gen.txt, adds a dependency, fixes a.txt.
    (repo / ".gitignore").write_text("build/\n")
    (repo / "gen.txt").write_text("v2\n")
    (repo / "lock.txt").write_text("x==1.0\ny==2\n")
    (repo / "a.txt").write_text("b\n")
    scratch = tmp_path / "scratch"
    sh(collect_script(base, str(repo), str(scratch)), repo)
    files = on_base(repo, base, scratch / PATCH_NAME)
    assert files == {
        ".gitignore": "build/\n",
        "a.txt": "b\n",
        "gen.txt": "v2\n",  # a new file in the base's terms
        "lock.txt": "x==1.0\ny==2\n",  # as it is now, setup's edit with the agent's
    }


def test_nested_repositories_with_no_commit_are_listed_by_name(tmp_path: Path) -> None:
    # `git add -A` stops at the first of them (exit 128); the script names every one, and
    # neither a nested repository with a commit (refused later, as a gitlink) nor an ignored one.
    repo, head = workspace(tmp_path)
    sh(
        "echo ignored/ > .gitignore && git init -q ignored && "
        "mkdir -p web && git init -q web/app && echo hi > web/app/f.txt && "
        "git init -q 'my tool' && echo x > 'my tool/x' && "
        f"git init -q done && echo d > done/d && cd done && git add d && {COMMIT} -m d",
        repo,
    )
    scratch = tmp_path / "scratch"
    run = subprocess.run(
        ["/bin/sh", "-c", collect_script(head, str(repo), str(scratch))],
        cwd=repo,
        capture_output=True,
    )
    assert run.returncode == UNBORN_EXIT, run.stderr
    assert str(unborn_refusal((scratch / UNBORN_NAME).read_bytes())) == (
        "the change makes my tool, web/app a nested git repository with no commit (git cannot "
        "take in its files: it has no commit to link to); remove its .git directory so that "
        "its files are published instead"
    )
