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
from runner.store import Task, TaskState


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
