"""PR bodies and progress comments: complete, safe to render, never pinging anyone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from bot.reports import (
    MAX_BODY_CHARS,
    MAX_SUMMARY_CHARS,
    PullRequestReport,
    check_run_conclusion,
    check_run_output,
    check_table,
    fenced,
    final_comment,
    pr_body,
    progress_comment,
    public_tail,
    started_run_end,
)
from runner.results import (
    PHASES,
    CheckOutcome,
    Conclusion,
    Phase,
    PhaseStatus,
    TaskResult,
    initial_phases,
    judge_checks,
    judged_phases,
)

PASS = CheckOutcome("pytest -q", "AGENTS.md:12", 0, "3 passed")
FAIL = CheckOutcome("ruff check .", "config", 1, "\n".join(f"line {n}" for n in range(100)))


def test_the_check_table_marks_each_command_and_shows_failure_tails() -> None:
    table = check_table([PASS, FAIL])
    assert "| ✅ | `pytest -q` | AGENTS.md:12 | 0 |" in table
    assert "| ❌ | `ruff check .` | config | 1 |" in table
    assert "line 99" in table
    assert "line 69" not in table  # only the tail
    assert "3 passed" not in table  # passing output is not repeated


def test_a_timed_out_check_says_so() -> None:
    assert "| ❌ | `sleep 999` | config | timeout |" in check_table(
        [CheckOutcome("sleep 999", "config", None)]
    )


def test_pr_body_has_request_summary_checks_blocked_and_closes() -> None:
    body = pr_body(
        PullRequestReport(
            request="fix the flaky date test\nthanks @bob",
            requester="alice",
            summary="Pinned the clock in tests/test_dates.py.",
            checks=[PASS, FAIL],
            blocked=["CONNECT evil.example:443"],
            closes=7,
            task_url="https://gantry.example/tasks/3?sig=x",
        )
    )
    assert body.startswith("@alice asked:\n\n> fix the flaky date test\n> thanks @\u2060bob")
    assert "### Checks" in body
    assert "`CONNECT evil.example:443`" in body
    assert body.endswith("Closes #7")
    assert "[Task log](https://gantry.example/tasks/3?sig=x)" in body


def test_backticks_in_output_cannot_break_out_of_the_fence() -> None:
    nasty = "```\n</details>\n# Heading\n````"
    block = fenced(nasty)
    assert block.startswith("`````\n")
    assert block.endswith("\n`````")
    tokens = MarkdownIt("commonmark").parse(block)
    assert [t.type for t in tokens] == ["fence"]


@given(st.text(), st.text())
def test_any_output_stays_inside_its_block(command: str, output: str) -> None:
    table = check_table([CheckOutcome(command or "x", "config", 2, output)])
    tokens = MarkdownIt("commonmark").parse(table)
    assert "heading_open" not in [t.type for t in tokens]


def test_huge_bodies_are_cut_to_githubs_limit() -> None:
    big = CheckOutcome("x", "config", 1, "y" * 200_000)
    body = pr_body(PullRequestReport("r", "a", "s" * 100_000, [big]))
    assert len(body) <= MAX_BODY_CHARS
    assert body.endswith("(cut to fit GitHub's limit)")


def test_progress_comment_lists_phases_with_timings() -> None:
    phases = initial_phases()
    phases[0] = Phase("prepare", PhaseStatus.DONE, 1.25)
    phases[1] = Phase("environment", PhaseStatus.RUNNING)
    text = progress_comment(4, phases, "https://g/tasks/4")
    assert text.splitlines()[:4] == [
        "**Gantry task #4**",
        "",
        "- ✅ prepare (1.2 s)",
        "- ⏳ environment",
    ]
    assert text.count("⬜") == 4
    assert text.endswith("[Task log](https://g/tasks/4)")
    listed = progress_comment(4, phases, "https://g/tasks/4", repo_url="https://g/repos/o/r/tasks")
    assert listed.endswith(
        "[Task log](https://g/tasks/4) · [All tasks in this repository](https://g/repos/o/r/tasks)"
    )


def test_final_comments_say_how_the_task_ended() -> None:
    phases = initial_phases()
    published = TaskResult(Conclusion.PUBLISHED, pull_url="https://g/octo/hello/pull/9")
    assert final_comment(1, phases, published).endswith("🚀 Done: https://g/octo/hello/pull/9")
    nothing = final_comment(1, phases, TaskResult(Conclusion.NO_CHANGES))
    assert nothing.endswith("changed nothing, so there is no pull request.")
    failed = TaskResult(
        Conclusion.FAILED, failed_phase="agent", reason="the agent exited 2", log_tail="E: @x"
    )
    text = final_comment(1, phases, failed)
    assert "😕 Failed in the **agent** phase: the agent exited 2" in text
    assert text.endswith("```text\nE: @\u2060x\n```")


# What setup printed of a secret "hunter2-token": reversed and hex, which redaction cannot see.
SETUP_LEAK = ["[gantry] environment started", "nekot-2retnuh", "68756e746572322d746f6b656e"]


def test_a_failure_in_a_phase_with_secrets_shows_no_log_in_public() -> None:
    for phase in ("environment", "prepare"):
        failed = TaskResult(
            Conclusion.FAILED, failed_phase=phase, reason="`setup` exited 1",
            log_tail="\n".join(SETUP_LEAK),
        )  # fmt: skip
        text = final_comment(1, initial_phases(), failed, "https://g/tasks/1")
        assert "nekot" not in text
        assert "68756e" not in text
        assert "its log is on the task page only" in text
        assert "[Task log](https://g/tasks/1)" in text


def test_a_later_phases_tail_never_reaches_back_into_setup() -> None:
    tail = [*SETUP_LEAK, "[gantry] environment done in 1.0s", "[gantry] agent started", "boom"]
    failed = TaskResult(
        Conclusion.FAILED, failed_phase="agent", reason="the agent exited 1",
        log_tail="\n".join(tail),
    )  # fmt: skip
    text = final_comment(1, initial_phases(), failed)
    assert text.endswith("```text\nboom\n```")
    assert "nekot" not in text


def test_a_failed_checks_tail_in_the_pr_body_is_the_checks_own() -> None:
    tail = [*SETUP_LEAK, "[gantry] agent started", "[gantry] checks started", "1 failed"]
    check = CheckOutcome("pytest -q", "AGENTS.md:3", 1, "\n".join(tail))
    body = pr_body(PullRequestReport("fix", "alice", "", [check]))
    assert "1 failed" in body
    assert "nekot" not in body
    assert "agent started" not in body


def test_a_tail_without_its_phase_start_is_all_the_phases_own() -> None:
    assert public_tail("a\nb", "agent") == "a\nb"
    assert public_tail("x\n[gantry] agent started\na", "agent") == "a"
    assert public_tail("x", None) == ""


def test_a_finished_checks_phase_is_judged_by_its_outcomes() -> None:
    done = Phase("checks", PhaseStatus.DONE, 2.0)
    assert judge_checks(done, [PASS, FAIL]) == Phase(
        "checks", PhaseStatus.FAILED, 2.0, "1 of 2 failed"
    )
    assert judge_checks(done, [PASS, PASS]) == Phase("checks", PhaseStatus.DONE, 2.0, "2 passed")
    assert judge_checks(done, [PASS]).note == "passed"
    assert judge_checks(done, [FAIL]) == Phase("checks", PhaseStatus.FAILED, 2.0, "failed")
    assert judge_checks(done, []) == Phase("checks", PhaseStatus.DONE, 2.0, "none configured")
    running = Phase("checks", PhaseStatus.RUNNING)
    assert judge_checks(running, [FAIL]) == running
    assert judge_checks(Phase("agent", PhaseStatus.DONE), [FAIL]).status is PhaseStatus.DONE


def test_the_final_comment_shows_a_failing_check_as_a_cross_while_publishing() -> None:
    phases = [Phase(name, PhaseStatus.DONE, 1.0) for name in PHASES]
    result = TaskResult(Conclusion.PUBLISHED, checks=(PASS, FAIL), pull_url="https://g/pull/2")
    comment = final_comment(5, phases, result)
    assert "- ❌ checks (1.0 s): 1 of 2 failed" in comment
    assert "🚀 Done: https://g/pull/2" in comment
    assert "### Checks" not in comment  # an issue's PR body has them


def test_a_failure_or_stop_without_outcomes_leaves_the_checks_line_alone() -> None:
    phases = [Phase("checks", PhaseStatus.DONE, 1.0), Phase("publish", PhaseStatus.FAILED)]
    failed = TaskResult(Conclusion.FAILED, failed_phase="publish", reason="push refused")
    assert judged_phases(phases, failed) == phases
    assert judged_phases(phases, TaskResult(Conclusion.NO_CHANGES))[0].note == "none configured"


def test_a_rounds_final_comment_on_a_pull_request_carries_its_checks_and_blocks() -> None:
    result = TaskResult(
        Conclusion.PUBLISHED,
        checks=(FAIL,),
        pull_url="https://g/pull/2",
        blocked=("CONNECT evil.example:443 domain not allowed",),
    )
    comment = final_comment(5, initial_phases(), result, round_results=True)
    assert comment.index("🚀 Done") < comment.index("### Checks")
    assert "| ❌ | `ruff check .` | config | 1 |" in comment
    assert "line 99" in comment
    assert (
        "### Blocked network attempts\n\n- `CONNECT evil.example:443 domain not allowed`" in comment
    )
    failed = TaskResult(Conclusion.FAILED, failed_phase="agent", reason="exit 1")
    assert "### Checks" not in final_comment(5, initial_phases(), failed, round_results=True)


def test_a_check_run_concludes_from_the_checks() -> None:
    assert check_run_conclusion([PASS, FAIL]) == "failure"
    assert check_run_conclusion([PASS]) == "success"
    assert check_run_conclusion([]) == "neutral"
    output = check_run_output(TaskResult(Conclusion.PUBLISHED), "https://g/tasks/5")
    assert output["title"] == "No checks"
    assert output["summary"].endswith("[Task log](https://g/tasks/5)")
    huge = CheckOutcome("x", "config", 1, "y" * 200_000)
    big = check_run_output(TaskResult(Conclusion.PUBLISHED, checks=(huge,) * 5))
    assert len(big["summary"]) <= MAX_SUMMARY_CHARS


def test_the_started_run_points_on_to_the_pushed_commit_or_says_why_it_ended() -> None:
    published = TaskResult(Conclusion.PUBLISHED, checks=(FAIL,))
    moved = started_run_end(published, "a" * 40)
    assert moved["conclusion"] == "neutral"
    assert "a" * 40 in str(moved["output"])
    assert started_run_end(published, None)["conclusion"] == "neutral"
    unchanged = TaskResult(Conclusion.NO_CHANGES, checks=(PASS,))
    assert started_run_end(unchanged, None)["conclusion"] == "success"
    failed = TaskResult(Conclusion.FAILED, failed_phase="agent", reason="@bob broke it")
    end = started_run_end(failed, None)
    assert end["conclusion"] == "failure"
    assert end["output"] == {"title": "Failed in agent", "summary": "@\u2060bob broke it"}
    assert started_run_end(TaskResult(Conclusion.CANCELLED), None)["conclusion"] == "cancelled"


def test_a_round_failing_after_its_checks_still_shows_them_and_its_blocks() -> None:
    failed = TaskResult(
        Conclusion.FAILED,
        checks=(PASS, FAIL),
        failed_phase="publish",
        reason="GitHub did not open the pull request",
        blocked=("GET denied.test/x domain not allowed",),
    )
    comment = final_comment(5, initial_phases(), failed, round_results=True)
    assert comment.index("😕 Failed in the **publish** phase") < comment.index("### Checks")
    assert "| ✅ | `pytest -q` | AGENTS.md:12 | 0 |" in comment
    assert "| ❌ | `ruff check .` | config | 1 |" in comment
    assert "- `GET denied.test/x domain not allowed`" in comment
    # On an issue the PR body would carry them; there is no PR, and no round report either.
    assert "### Checks" not in final_comment(5, initial_phases(), failed)
