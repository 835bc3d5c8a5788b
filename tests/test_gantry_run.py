"""`gantry run` as a developer types it: which commit, config and AGENTS.md a run uses, and
the arguments it refuses. The local executor runs the tasks, so no Docker engine is needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gantry.cli import main

AGENT_CONFIG = "agent:\n  command: echo {word} > said.txt\n"
AGENTS_MD = "# Agents\n\n## Checks\n\n```sh\ngrep -q {word} said.txt\n```\n"


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit(root: Path, files: dict[str, str], tag: str) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", tag)
    sh(root, "git", "tag", tag)


def said_by(word: str) -> dict[str, str]:
    """A config whose agent writes `word`, and an AGENTS.md whose check wants it."""
    return {
        ".github/gantry.yml": AGENT_CONFIG.format(word=word),
        "AGENTS.md": AGENTS_MD.format(word=word),
    }


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose config moved on after `old`, with an uncommitted edit on top."""
    monkeypatch.setenv("GANTRY_EXECUTOR", "local")
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path / "data"))
    repo = tmp_path / "project"
    repo.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    commit(repo, said_by("old"), "old")
    commit(repo, said_by("new"), "new")
    for name, text in said_by("edited").items():
        (repo / name).write_text(text)
    return repo


def local_branches(root: Path) -> list[str]:
    listed = sh(root, "git", "branch", "--list", "gantry/local-*", "--format=%(refname:short)")
    return listed.split()


def said(root: Path) -> str:
    [branch] = local_branches(root)
    return sh(root, "git", "show", f"{branch}:said.txt").strip()


def test_a_run_at_a_ref_uses_that_commits_config_and_agents_md(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(root), "--prompt", "say it", "--ref", "old"]) == 0
    out = capsys.readouterr().out
    assert said(root) == "old"  # old's agent ran, not the working tree's nor HEAD's
    assert "`grep -q old said.txt` | AGENTS.md:6 | 0 |" in out


def test_without_a_ref_the_working_trees_config_is_tried_on_head(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(root), "--prompt", "say it"]) == 0
    assert said(root) == "edited"
    assert "`grep -q edited said.txt`" in capsys.readouterr().out


def test_a_ref_without_a_config_runs_with_the_defaults(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(root, "git", "rm", "-qf", ".github/gantry.yml", "AGENTS.md")
    commit(root, {"README.md": "nothing to see\n"}, "bare")
    commit(root, said_by("later"), "later")  # the branch's head has a config again
    # The defaults have no agent and no checks: nothing changes, nothing is published.
    assert main(["run", str(root), "--prompt", "say it", "--ref", "bare"]) == 0
    out = capsys.readouterr().out
    assert "no_changes" in out
    assert local_branches(root) == []


def test_a_ref_that_names_no_commit_is_one_line_and_runs_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(root), "--prompt", "say it", "--ref", "no-such-branch"]) == 2
    out = capsys.readouterr().out.strip()
    assert out.startswith("gantry run: 'no-such-branch' names no commit in ")
    assert "\n" not in out
    assert local_branches(root) == []


def test_a_path_below_the_top_of_the_checkout_is_one_line(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(root / ".github"), "--prompt", "say it"]) == 2
    out = capsys.readouterr().out.strip()
    assert out == f"gantry run: {root / '.github'} is not the top of a git checkout (no .git)"


def test_an_empty_prompt_is_refused_before_anything_runs(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(root), "--prompt", "  "]) == 2
    assert "--prompt is empty" in capsys.readouterr().out
    assert local_branches(root) == []


def test_a_symlinked_config_at_a_ref_is_followed_as_in_a_checkout(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(root, "git", "rm", "-qf", ".github/gantry.yml")
    (root / ".github").mkdir()
    (root / ".github" / "gantry.yml").symlink_to("../ci/gantry.yml")
    commit(root, {"ci/gantry.yml": AGENT_CONFIG.format(word="linked")}, "linked")
    assert main(["run", str(root), "--prompt", "say it", "--ref", "linked"]) == 0
    assert said(root) == "linked"
