"""What the PR body, the progress comment and the task page say about a task's attempts."""

from __future__ import annotations

from bot.reports import (
    PullRequestReport,
    attempts_section,
    check_run_output,
    final_comment,
    pr_body,
    started_run_end,
)
from bot.task_page import render
from runner.attempts import REPO_LIMIT, attempts_record
from runner.results import (
    AttemptReport,
    Attempts,
    CheckOutcome,
    Conclusion,
    DiffSize,
    TaskResult,
    initial_phases,
)
from runner.task import Task, TaskState

PASS = CheckOutcome("pytest -q", "AGENTS.md:6", 0)
FAIL = CheckOutcome("pytest -q", "AGENTS.md:6", 1, "E   assert 1 == 2")
FIRST = AttemptReport(1, (FAIL,), DiffSize(1, 2, 0, 90))
SECOND = AttemptReport(2, (PASS,), DiffSize(2, 5, 1, 300), usage="🤖 codex · 3 requests")
THIRD = AttemptReport(3, (), error="agent: the agent exit code 1 | @bob was here")
ATTEMPTS = Attempts(3, 3, "", (FIRST, SECOND, THIRD), winner=2)


def test_the_pr_body_names_the_published_attempt_and_how_the_others_did() -> None:
    report = PullRequestReport("fix it", "alice", "Fixed.", (PASS,), attempts=ATTEMPTS)
    body = pr_body(report)
    assert "### Attempts\n\nAttempt 2 of 3 was published: its checks passed.\n" in body
    assert "| 1 | ❌ failed | +2 -0 in 1 file | not published |" in body
    assert "| **2** | ✅ passed | +5 -1 in 2 files | 🏆 published |" in body
    # A failure's reason can neither break the table nor ping anyone.
    assert "| 3 | — | — | failed in agent: the agent exit code 1 \\| @\u2060bob was here |" in body


def test_of_several_passing_attempts_the_body_says_the_smallest_diff_won() -> None:
    bigger = AttemptReport(1, (PASS,), DiffSize(1, 9, 0, 400))
    attempts = Attempts(2, 2, "", (bigger, SECOND), winner=2)
    assert (
        "Attempt 2 of 2 was published: its checks passed, and its diff is the smallest of the "
        "2 that did." in attempts_section(attempts)
    )


def test_when_no_attempt_passed_the_body_says_the_fewest_failing_won() -> None:
    attempts = Attempts(2, 2, "", (FIRST, THIRD), winner=1)
    assert "no attempt passed all its checks, and it had the fewest failing" in attempts_section(
        attempts
    )


def test_a_capped_count_is_explained() -> None:
    attempts = Attempts(5, 3, REPO_LIMIT, (FIRST, SECOND, THIRD), winner=2)
    assert (
        "Asked for 5 attempts; 3 ran, the most `agent.max_attempts` in .github/gantry.yml "
        "allows." in attempts_section(attempts)
    )
    assert "Asked for" not in attempts_section(ATTEMPTS)


def test_no_changes_in_any_attempt_is_said_plainly() -> None:
    empty = (AttemptReport(1, (PASS,)), AttemptReport(2, (PASS,)))
    result = TaskResult(Conclusion.NO_CHANGES, (PASS,), attempts=Attempts(2, 2, "", empty))
    comment = final_comment(7, initial_phases(), result)
    assert "None of the 2 attempts changed anything, so there is no pull request." in comment
    assert "| 1 | ✅ passed | no changes | not published |" in comment


def test_a_failed_attempt_is_never_reported_as_an_attempt_that_changed_nothing() -> None:
    failed = AttemptReport(1, (), error="agent: the agent exit code 7")
    empty = (failed, AttemptReport(2, (PASS,)), AttemptReport(3, (PASS,)))
    why = (
        "No attempt produced a change that could be published: attempt 1 failed (agent: the "
        "agent exit code 7), attempts 2 and 3 changed nothing."
    )
    attempts = Attempts(3, 3, "", empty)
    result = TaskResult(Conclusion.FAILED, (PASS,), reason=why, attempts=attempts)
    comment = final_comment(7, initial_phases(), result)
    assert "changed anything" not in comment
    assert f"😕 Failed: {why}" in comment
    assert "### Attempts\n\nNo attempt produced a change that could be published.\n" in comment
    assert "| 1 | — | — | failed in agent: the agent exit code 7 |" in comment
    summary = started_run_end(result, None)["output"]
    assert isinstance(summary, dict)
    assert summary["title"] == "Failed"
    assert summary["summary"].startswith(why + "\n\n### Attempts")


def test_a_single_attempt_task_says_nothing_of_attempts() -> None:
    body = pr_body(PullRequestReport("fix it", "alice", "Fixed.", (PASS,)))
    assert "Attempt" not in body
    comment = final_comment(7, initial_phases(), TaskResult(Conclusion.NO_CHANGES, (PASS,)))
    assert "Attempt" not in comment


def test_the_task_page_keeps_every_attempts_checks_and_diff_escaped() -> None:
    task = Task(
        repo="octo/hello", installation_id=1, number=3, is_pull_request=False, title="t",
        clone_url="u", default_branch="main", comment_id=None, comment_kind="issue",
        requester="alice", kind="request", request="fix it", head_ref=None, head_sha=None,
        thread_body="", id=9, delivery_id="d", state=TaskState.SUCCEEDED, created_at=0.0,
        updated_at=0.0, best_of=3,
    )  # fmt: skip
    patches = {1: b"+<script>first</script>\n", 2: b"+second\n"}
    record = {"attempts": attempts_record(ATTEMPTS, patches)}
    page = render(task, [], "", "+second\n", record)
    assert "<h3>Attempt 1: not published (+2 -0 in 1 files)</h3>" in page
    assert "<h3>Attempt 2: published (+5 -1 in 2 files)</h3><p>🤖 codex · 3 requests</p>" in page
    assert "Attempt 3: failed in agent: the agent exit code 1" in page
    assert "+&lt;script&gt;first&lt;/script&gt;" in page
    assert "<script>first" not in page
    assert "E   assert 1 == 2" in page  # the failing check's output
    assert "<h2>Model usage</h2>" not in page  # no model was used


def test_the_check_run_summary_shows_the_attempts_too() -> None:
    result = TaskResult(Conclusion.PUBLISHED, (PASS,), attempts=ATTEMPTS)
    output = check_run_output(result)
    assert output["title"] == "Checks: passed"
    assert "Attempt 2 of 3 was published: its checks passed." in output["summary"]
    assert "Attempt" not in check_run_output(TaskResult(Conclusion.PUBLISHED, (PASS,)))["summary"]
