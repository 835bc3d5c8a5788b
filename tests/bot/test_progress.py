"""The progress comment, check run, reactions and PR opening, against the stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from bot.github_client import GitHubClient
from bot.progress import GitHubReporter
from bot.pull_requests import find_open_pull, open_pull
from forge.server import Forge
from runner.results import CheckOutcome, Conclusion, Phase, PhaseStatus, TaskResult
from runner.task import Task, TaskState


@pytest_asyncio.fixture
async def gh(forge: Forge, tmp_path: Path) -> AsyncIterator[GitHubClient]:
    (tmp_path / "README.md").write_text("hello\n")
    await forge.create_repo("octo", "hello", tmp_path)
    creds = forge.register_app("gantry")
    token = forge.mint_token(forge.install(creds.app_id, "octo", ["hello"]))
    async with aiohttp.ClientSession() as session:

        async def source() -> str:
            return token

        yield GitHubClient(session, base_url=forge.api_url, token=source)


def task_on(number: int, comment_id: int | None, **extra: object) -> Task:
    fields: dict[str, object] = {
        "repo": "octo/hello",
        "installation_id": 1,
        "number": number,
        "is_pull_request": False,
        "title": "t",
        "clone_url": "x",
        "default_branch": "main",
        "comment_id": comment_id,
        "comment_kind": "issue_comment",
        "requester": "alice",
        "kind": "request",
        "request": "fix it",
        "head_ref": None,
        "head_sha": None,
        "thread_body": "",
        "id": 5,
        "delivery_id": "d",
        "state": TaskState.RUNNING,
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    return Task(**(fields | extra))  # type: ignore[arg-type]


async def test_one_comment_edited_through_the_phases(forge: Forge, gh: GitHubClient) -> None:
    issue = forge.create_issue("octo", "hello", "Bug", user="alice")
    asked = forge.add_comment("octo", "hello", issue.number, "@gantry fix it", "alice")
    reporter = GitHubReporter(gh, task_on(issue.number, asked), "https://g/tasks/5")
    await reporter.started()
    await reporter.phase(Phase("prepare", PhaseStatus.DONE, 0.4))
    await reporter.phase(Phase("environment", PhaseStatus.RUNNING))
    await reporter.settle()
    [comment] = [c for c in forge.comments("octo", "hello", issue.number) if c["id"] != asked]
    assert "- ✅ prepare (0.4 s)" in comment["body"]
    assert "- ⏳ environment" in comment["body"]
    result = TaskResult(Conclusion.PUBLISHED, pull_url="https://g/pull/2")
    await reporter.finished(result)
    [final] = [c for c in forge.comments("octo", "hello", issue.number) if c["id"] != asked]
    assert final["body"].endswith("🚀 Done: https://g/pull/2")
    assert ("rocket", "gantry[bot]") in forge.reactions(asked)


async def test_a_failure_gets_the_confused_reaction_and_a_failed_check_run(
    forge: Forge, gh: GitHubClient
) -> None:
    head = await forge.commit_files("octo", "hello", "feature", {"f.txt": "f\n"})
    pull = await open_pull(
        gh,
        "octo/hello",
        branch="feature",
        base="main",
        title="F",
        body="b",
        draft=False,
        labels=[],
    )
    asked = forge.add_comment("octo", "hello", pull.number, "@gantry go", "alice")
    task = task_on(pull.number, asked, is_pull_request=True, head_ref="feature", head_sha=head)
    reporter = GitHubReporter(gh, task)
    await reporter.started()
    [run] = forge.check_runs("octo", "hello")
    assert (run["head_sha"], run["status"]) == (head, "in_progress")
    await reporter.finished(
        TaskResult(Conclusion.FAILED, failed_phase="checks", reason="pytest failed")
    )
    [run] = forge.check_runs("octo", "hello")
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert ("confused", "gantry[bot]") in forge.reactions(asked)


async def test_a_pull_request_is_opened_once_with_labels_and_draft(
    forge: Forge, gh: GitHubClient
) -> None:
    await forge.commit_files("octo", "hello", "gantry/1-x", {"x.txt": "x\n"})
    args = {"branch": "gantry/1-x", "base": "main", "title": "X", "body": "Closes #1"}
    first = await open_pull(gh, "octo/hello", **args, draft=True, labels=["gantry"])
    again = await open_pull(gh, "octo/hello", **args, draft=True, labels=["gantry"])
    assert first == again
    [pull] = forge.pulls("octo", "hello")
    assert pull.draft
    assert pull.issue.labels == ["gantry"]
    assert await find_open_pull(gh, "octo/hello", "gantry/1-x") == first
    assert await find_open_pull(gh, "octo/hello", "gantry/2-y") is None


def test_check_outcomes_know_pass_from_fail() -> None:
    assert CheckOutcome("true", "config", 0).passed
    assert not CheckOutcome("sleep", "config", None).passed


async def test_github_failing_while_reporting_does_not_fail_the_task(
    forge: Forge, gh: GitHubClient
) -> None:
    issue = forge.create_issue("octo", "hello", "Bug", user="alice")
    forge.inject_fault("POST", "/repos/{owner}/{repo}/issues/{n}/comments", "error", status=500)
    reporter = GitHubReporter(gh, task_on(issue.number, None))
    await reporter.started()  # logged, not raised
    await reporter.phase(Phase("prepare", PhaseStatus.DONE, 0.1))
    await reporter.finished(TaskResult(Conclusion.NO_CHANGES))
    assert reporter.comment_id is None
    assert forge.comments("octo", "hello", issue.number) == []


PASS = CheckOutcome("true", "AGENTS.md:6", 0)
FAIL = CheckOutcome("pytest -q", ".github/gantry.yml:9", 1, "E   assert 3 == 4")


async def gantry_pull(forge: Forge, gh: GitHubClient, branch: str, base: str = "main") -> str:
    """A branch with one commit and an open PR from it, as Gantry's publisher leaves them;
    the PR's URL."""
    await forge.commit_files("octo", "hello", branch, {"fix.txt": "fixed\n"}, base=base)
    args = {"branch": branch, "base": base, "title": "Fix", "body": "b"}
    pull = await open_pull(gh, "octo/hello", **args, draft=False, labels=[])
    return pull.html_url


async def finish_issue_task(
    forge: Forge, gh: GitHubClient, checks: tuple[CheckOutcome, ...]
) -> tuple[dict[str, object], str, str]:
    """An issue task that ran its checks and published: its check run, comment and pushed SHA."""
    issue = forge.create_issue("octo", "hello", "Bug", user="alice")
    asked = forge.add_comment("octo", "hello", issue.number, "@gantry fix it", "alice")
    reporter = GitHubReporter(gh, task_on(issue.number, asked), "https://g/tasks/5")
    await reporter.started()
    assert forge.check_runs("octo", "hello") == []  # no PR yet, so no head to put one on
    await reporter.phase(Phase("checks", PhaseStatus.DONE, 1.5))
    url = await gantry_pull(forge, gh, f"gantry/{issue.number}-fix")
    await reporter.finished(TaskResult(Conclusion.PUBLISHED, checks=checks, pull_url=url))
    pushed = (await forge.branches("octo", "hello"))[f"gantry/{issue.number}-fix"]
    [run] = forge.check_runs("octo", "hello")
    [comment] = [c for c in forge.comments("octo", "hello", issue.number) if c["id"] != asked]
    return run, str(comment["body"]), pushed


async def test_a_failing_check_is_a_cross_and_a_failed_run_on_the_pushed_commit(
    forge: Forge, gh: GitHubClient
) -> None:
    run, comment, pushed = await finish_issue_task(forge, gh, (PASS, FAIL))
    assert "- ❌ checks (1.5 s): 1 of 2 failed" in comment
    assert "✅ checks" not in comment
    assert (run["head_sha"], run["status"], run["conclusion"]) == (pushed, "completed", "failure")
    output = run["output"]
    assert isinstance(output, dict)
    assert output["title"] == "Checks: 1 of 2 failed"
    assert "| ❌ | `pytest -q` | .github/gantry.yml:9 | 1 |" in output["summary"]
    assert "assert 3 == 4" in output["summary"]


async def test_passing_checks_succeed_and_no_checks_are_neutral(
    forge: Forge, gh: GitHubClient
) -> None:
    run, comment, _ = await finish_issue_task(forge, gh, (PASS, PASS))
    assert (run["conclusion"], "- ✅ checks (1.5 s): 2 passed" in comment) == ("success", True)
    forge.state.check_runs.clear()
    run, comment, _ = await finish_issue_task(forge, gh, ())
    assert (run["conclusion"], "- ✅ checks (1.5 s): none configured" in comment) == (
        "neutral",
        True,
    )


async def test_a_follow_up_round_moves_the_run_to_its_commit_and_reports_on_the_pull(
    forge: Forge, gh: GitHubClient
) -> None:
    url = await gantry_pull(forge, gh, "gantry/1-fix")
    before = (await forge.branches("octo", "hello"))["gantry/1-fix"]
    [pull] = forge.pulls("octo", "hello")
    asked = forge.add_comment("octo", "hello", pull.issue.number, "@gantry more", "alice")
    task = task_on(pull.issue.number, asked, is_pull_request=True, head_ref="gantry/1-fix",
                   head_sha=before)  # fmt: skip
    reporter = GitHubReporter(gh, task)
    await reporter.started()
    pushed = await forge.commit_files("octo", "hello", "gantry/1-fix", {"more.txt": "more\n"})
    blocked = ("GET http://evil.test/x domain not allowed",)
    result = TaskResult(
        Conclusion.PUBLISHED, checks=(FAIL,), pull_url=url, blocked=blocked, head_sha=pushed
    )
    await reporter.finished(result)
    started, ended = forge.check_runs("octo", "hello")
    assert (started["head_sha"], started["conclusion"]) == (before, "neutral")
    assert pushed in str(started["output"])
    assert (ended["head_sha"], ended["conclusion"]) == (pushed, "failure")
    [comment] = [c for c in forge.comments("octo", "hello", pull.issue.number) if c["id"] != asked]
    assert "### Checks" in comment["body"]
    assert "| ❌ | `pytest -q` |" in comment["body"]
    assert "### Blocked network attempts" in comment["body"]
    assert "`GET http://evil.test/x domain not allowed`" in comment["body"]


async def test_the_pushed_commit_handed_back_wins_over_the_pull_requests_head(
    forge: Forge, gh: GitHubClient
) -> None:
    url = await gantry_pull(forge, gh, "gantry/1-fix")
    ours = (await forge.branches("octo", "hello"))["gantry/1-fix"]
    await forge.commit_files("octo", "hello", "gantry/1-fix", {"theirs.txt": "a person's\n"})
    reporter = GitHubReporter(gh, task_on(1, None))
    await reporter.finished(
        TaskResult(Conclusion.PUBLISHED, checks=(PASS,), pull_url=url, head_sha=ours)
    )
    [run] = forge.check_runs("octo", "hello")
    assert (run["head_sha"], run["conclusion"]) == (ours, "success")


async def test_no_changes_on_a_pull_request_judges_its_head_by_the_checks(
    forge: Forge, gh: GitHubClient
) -> None:
    await gantry_pull(forge, gh, "gantry/1-fix")
    head = (await forge.branches("octo", "hello"))["gantry/1-fix"]
    [pull] = forge.pulls("octo", "hello")
    task = task_on(pull.issue.number, None, is_pull_request=True, head_sha=head)
    reporter = GitHubReporter(gh, task)
    await reporter.started()
    await reporter.finished(TaskResult(Conclusion.NO_CHANGES, checks=(PASS, FAIL)))
    [run] = forge.check_runs("octo", "hello")
    assert (run["head_sha"], run["conclusion"]) == (head, "failure")


async def test_an_unreadable_pull_request_still_ends_the_started_run_and_reacts(
    forge: Forge, gh: GitHubClient
) -> None:
    url = await gantry_pull(forge, gh, "gantry/1-fix")
    before = (await forge.branches("octo", "hello"))["gantry/1-fix"]
    [pull] = forge.pulls("octo", "hello")
    asked = forge.add_comment("octo", "hello", pull.issue.number, "@gantry more", "alice")
    task = task_on(pull.issue.number, asked, is_pull_request=True, head_sha=before)
    reporter = GitHubReporter(gh, task)
    await reporter.started()
    forge.inject_fault("GET", "/repos/{owner}/{repo}/pulls/{n}", "error", status=404)
    await reporter.finished(TaskResult(Conclusion.PUBLISHED, checks=(PASS,), pull_url=url))
    [run] = forge.check_runs("octo", "hello")
    assert (run["head_sha"], run["status"], run["conclusion"]) == (before, "completed", "neutral")
    assert ("rocket", "gantry[bot]") in forge.reactions(asked)
