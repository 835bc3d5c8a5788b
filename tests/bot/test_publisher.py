"""Where the publisher puts work: new branches, follow-ups, stacked PRs, and forks refused."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from gidgethub.abc import GitHubAPI

from bot.publisher import FORK_REFUSAL, GitHubPublisher, change_summary
from config.repo_config import RepoConfig
from runner.mirror import Mirrors
from runner.pipeline import Work
from runner.publish import PublishError
from tests.bot.test_progress import task_on


class CannedGitHub(GitHubAPI):
    """Answers GET requests from a table; anything else is a test failure."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__("test")
        self.answers = answers

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        raise AssertionError(f"unexpected {method} {url}")

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("no sleeping here")

    async def getitem(self, url: str, url_vars: Any = None, **kwargs: Any) -> Any:
        expanded = url.replace("{+repo}", "{repo}").format(**(url_vars or {}))
        return self.answers[expanded]


def remote(tmp_path: Path, branches: list[str]) -> Path:
    repo = tmp_path / "remote"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for branch in ["main", *branches]:
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=a", "-c", "user.email=a@x", "commit",
             "--allow-empty", "-qm", branch], check=True,
        )  # fmt: skip
        if branch != "main":
            subprocess.run(["git", "-C", str(repo), "branch", "-f", branch], check=True)
    return repo


def work() -> Work:
    return Work(b"", "", (), (), RepoConfig(), "0" * 40)


async def test_a_fork_pull_request_is_refused_with_an_explanation(tmp_path: Path) -> None:
    clone = remote(tmp_path, ["feature"])
    pull = {"head": {"ref": "feature", "repo": {"full_name": "someone/fork"}}, "html_url": "u"}
    gh = CannedGitHub({"/repos/octo/hello/pulls/3": pull})
    task = task_on(3, 1, is_pull_request=True, clone_url=str(clone), head_ref="feature")
    publisher = GitHubPublisher(gh, task, Mirrors(tmp_path / "data"), None, "gantry")
    with pytest.raises(PublishError, match="fork"):
        await publisher.target(work())
    assert "cannot push to forks" in FORK_REFUSAL


@pytest.mark.parametrize(("merged", "how"), [(False, "closed"), (True, "merged")])
async def test_a_follow_up_on_a_closed_pull_request_is_refused_and_says_why(
    tmp_path: Path, merged: bool, how: str
) -> None:
    clone = remote(tmp_path, ["gantry/3-fix"])
    pull = {
        "state": "closed",
        "merged": merged,
        "head": {"ref": "gantry/3-fix", "repo": {"full_name": "octo/hello"}},
        "html_url": "u",
    }
    gh = CannedGitHub({"/repos/octo/hello/pulls/3": pull})
    task = task_on(3, 1, is_pull_request=True, clone_url=str(clone), head_ref="gantry/3-fix")
    publisher = GitHubPublisher(gh, task, Mirrors(tmp_path / "data"), None, "gantry")
    # Where the round would push is decided before anything is pushed (`publish` asks for it
    # first): a closed pull request stops the round there.
    with pytest.raises(PublishError, match=f"#3 was {how} before this round could push"):
        await publisher.target(work())


async def test_issue_tasks_get_a_fresh_unique_branch(tmp_path: Path) -> None:
    clone = remote(tmp_path, ["gantry/3-t"])
    task = task_on(3, 1, clone_url=str(clone))
    publisher = GitHubPublisher(CannedGitHub({}), task, Mirrors(tmp_path / "d"), None, "gantry")
    target = await publisher.target(work())
    assert (target.branch, target.base, target.expected_remote) == ("gantry/3-t-2", "main", None)


def test_change_summary_lists_files() -> None:
    patch = b"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
    assert change_summary(patch) == "- `x.py`"
