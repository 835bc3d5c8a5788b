"""The agent's model usage in the PR body, the final progress comment and the task page."""

from __future__ import annotations

from bot.reports import PullRequestReport, final_comment, pr_body
from bot.task_page import render
from runner.results import Conclusion, Phase, PhaseStatus, TaskResult
from runner.task import Task, TaskState

LINE = "🤖 codex (gpt-5-codex) · model gpt-5-codex · 2 requests · 1,234 tokens in / 56 out"
TASK = Task(
    repo="octo/hello", installation_id=1, number=7, is_pull_request=False, title="t",
    clone_url="u", default_branch="main", comment_id=1, comment_kind="issue_comment",
    requester="alice", kind="request", request="fix it", head_ref=None, head_sha=None,
    thread_body="", id=3, delivery_id="d", state=TaskState.SUCCEEDED, created_at=0.0,
    updated_at=0.0,
)  # fmt: skip


def test_the_pr_body_has_the_usage_line() -> None:
    body = pr_body(PullRequestReport("fix it", "alice", "", (), usage=LINE))
    assert LINE in body
    assert "🤖" not in pr_body(PullRequestReport("fix it", "alice", "", ()))


def test_the_final_comment_has_the_usage_line_and_a_budget_failure() -> None:
    result = TaskResult(
        Conclusion.FAILED,
        failed_phase="agent",
        reason="the agent's requests budget ran out (Gantry budget exhausted: 3 of 3 requests)",
        usage=LINE,
    )
    text = final_comment(3, [Phase("agent", PhaseStatus.FAILED, 1.0)], result)
    assert LINE in text
    assert "requests budget ran out" in text


def test_the_task_page_shows_usage_and_the_session_escaped() -> None:
    usage = {
        "line": LINE,
        "budget_message": None,
        "provider_error": "upstream answered 500",
        "errors": [],
        "exchanges_dropped": 0,
        "exchanges": [
            {"provider": "openai", "model": "gpt-5-codex", "status": 200, "input_tokens": 10,
             "output_tokens": 2, "request": "write <b>it</b>", "answer": "done",
             "tool_calls": ['exec_command {"cmd": "ls"}']},
        ],
    }  # fmt: skip
    page = render(TASK, [], "", "", usage)
    assert "Model usage" in page
    assert "upstream answered 500" in page
    assert "write &lt;b&gt;it&lt;/b&gt;" in page
    assert "exec_command" in page
    assert "Model usage" not in render(TASK, [], "", "")
