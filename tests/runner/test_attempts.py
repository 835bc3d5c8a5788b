"""Best of N's pure core: how many attempts run, how big a diff is, which attempt wins."""

from __future__ import annotations

import pytest

from runner.attempts import (
    REPO_LIMIT,
    SERVER_LIMIT,
    attempt_count,
    attempts_record,
    checks_verdict,
    diff_size,
    failed_unpublished,
    listed,
    no_winner,
    pick_winner,
    stage_verdict,
    verdict_line,
)
from runner.results import (
    AttemptReport,
    Attempts,
    CheckOutcome,
    DiffSize,
    Phase,
    PhaseStatus,
)

PASS = CheckOutcome("pytest", "AGENTS.md:3", 0)
FAIL = CheckOutcome("pytest", "AGENTS.md:3", 1)
LINT_FAIL = CheckOutcome("ruff check", "AGENTS.md:4", 1)
PATCH = b"""\
diff --git a/a.txt b/a.txt
index 0000000..1111111 100644
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 same
--- a line that starts with two dashes
+++ a line that starts with two pluses
-old
+new
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000..2222222
GIT binary patch
literal 4
LcmZ?wbhEHbH0m7!

literal 0
HcmV?d00001

"""


def report(
    number: int, checks: tuple[CheckOutcome, ...], lines: int, **kw: object
) -> AttemptReport:
    diff = DiffSize(1, lines, 0, 10 * lines) if lines else DiffSize()
    return AttemptReport(number, checks, diff, **kw)  # type: ignore[arg-type]


def test_the_attempt_whose_checks_pass_wins_over_smaller_failing_diffs() -> None:
    reports = [report(1, (FAIL,), 1), report(2, (PASS,), 40), report(3, (FAIL,), 2)]
    assert pick_winner(reports) == reports[1]


def test_among_passing_attempts_the_smaller_diff_wins() -> None:
    reports = [report(1, (PASS,), 12), report(2, (PASS, PASS), 5), report(3, (PASS,), 7)]
    winner = pick_winner(reports)
    assert winner is not None
    assert winner.number == 2


def test_when_none_passes_fewer_failing_checks_win_then_the_smaller_diff() -> None:
    reports = [
        report(1, (FAIL, LINT_FAIL), 1),
        report(2, (FAIL, PASS), 30),
        report(3, (PASS, LINT_FAIL), 20),
    ]
    winner = pick_winner(reports)
    assert winner is not None
    assert winner.number == 3


def test_equal_lines_are_decided_by_bytes_then_by_the_earlier_attempt() -> None:
    bigger = AttemptReport(1, (PASS,), DiffSize(1, 3, 0, 300))
    smaller = AttemptReport(2, (PASS,), DiffSize(1, 3, 0, 120))
    same = AttemptReport(3, (PASS,), DiffSize(1, 3, 0, 120))
    assert pick_winner([bigger, smaller, same]) == smaller
    assert pick_winner([same, smaller]) == smaller  # attempt 2 before attempt 3


def test_attempts_without_a_change_or_that_failed_never_win() -> None:
    empty = report(1, (PASS,), 0)
    broken = report(2, (), 3, error="agent: the agent exit code 1")
    failing = report(3, (FAIL,), 9)
    assert pick_winner([empty, broken, failing]) == failing
    assert pick_winner([empty, broken]) is None
    assert pick_winner([]) is None


@pytest.mark.parametrize(
    ("asked", "repo_max", "server_max", "expected"),
    [
        (3, 3, 3, (3, "")),
        (2, 5, 4, (2, "")),
        (5, 3, 4, (3, REPO_LIMIT)),
        (5, 4, 3, (3, SERVER_LIMIT)),
        (5, 3, 3, (3, REPO_LIMIT)),
        (0, 3, 3, (1, "")),
    ],
)
def test_the_count_is_capped_by_the_config_then_the_server(
    asked: int, repo_max: int, server_max: int, expected: tuple[int, str]
) -> None:
    assert attempt_count(asked, repo_max, server_max) == expected


def test_diff_size_counts_hunk_lines_and_files_not_headers() -> None:
    assert diff_size(PATCH) == DiffSize(files=2, added=2, removed=2, bytes=len(PATCH))
    assert diff_size(b"") == DiffSize()


def test_the_checks_phase_is_done_when_one_attempt_passed_them_all() -> None:
    started = Phase("checks", PhaseStatus.DONE, 1.0)
    finished = [report(1, (FAIL,), 1), report(2, (PASS, PASS), 1), report(3, (PASS, FAIL), 1)]
    judged = checks_verdict(started, finished)
    assert (judged.status, judged.note) == (
        PhaseStatus.DONE,
        "attempt 2 passed; attempts 1 and 3 failed",
    )
    judged = checks_verdict(started, [finished[0], finished[2]])
    assert (judged.status, judged.note) == (PhaseStatus.FAILED, "attempts 1 and 3 failed")


def test_a_stage_names_the_attempts_that_dropped_out_in_it() -> None:
    started = Phase("agent", PhaseStatus.DONE, 1.0)
    assert stage_verdict(started, [1, 3]).note == "attempts 1 and 3 failed"
    assert stage_verdict(started, []) == started


def test_listed_numbers_read_as_words() -> None:
    assert [listed([2]), listed([1, 3]), listed([1, 2, 3])] == [
        "attempt 2",
        "attempts 1 and 3",
        "attempts 1, 2 and 3",
    ]


def test_the_record_keeps_every_attempt_with_its_patch_cut_to_the_limit() -> None:
    reports = (report(1, (FAIL,), 1), report(2, (PASS,), 2))
    attempts = Attempts(5, 2, REPO_LIMIT, reports, winner=2)
    record = attempts_record(attempts, {1: b"x" * 50, 2: b"+short\n"}, limit=10)
    assert (record["asked"], record["allowed"], record["winner"]) == (5, 2, 2)
    first, second = record["list"]
    assert first["patch"] == "x" * 10 + "\n… (40 more bytes not kept)"
    assert second["patch"] == "+short\n"
    assert first["checks"] == [
        {"command": "pytest", "origin": "AGENTS.md:3", "exit_code": 1, "tail": ""}
    ]
    assert second["diff"] == {"files": 1, "added": 2, "removed": 0, "bytes": 20}


def test_the_verdict_line_names_the_winner_or_says_none_changed_anything() -> None:
    reports = (report(1, (FAIL,), 1), report(2, (PASS,), 2))
    assert verdict_line(Attempts(2, 2, "", reports, 2)) == "attempt 2 of 2 won: its checks passed"
    assert verdict_line(Attempts(2, 2, "", reports, 1)) == "attempt 1 of 2 won: 1 checks failed"
    assert verdict_line(Attempts(2, 2, "", reports)) == "none of the 2 attempts changed anything"


def test_with_no_winner_failed_attempts_are_named_with_their_reasons_not_hidden() -> None:
    failed = report(1, (), 0, error="agent: the agent exit code 7")
    refused = report(
        2, (), 0, error="collect: the change touches\n  .github/workflows/x.yml " + "x" * 300
    )
    nothing = (report(3, (PASS,), 0), report(4, (PASS,), 0))
    attempts = Attempts(4, 4, "", (failed, refused, *nothing))
    assert failed_unpublished(attempts)
    why = no_winner(attempts)
    assert why.startswith(
        "No attempt produced a change that could be published: attempt 1 failed (agent: the "
        "agent exit code 7), attempt 2 failed (collect: the change touches .github/workflows/x.yml"
    )
    assert why.endswith("…), attempts 3 and 4 changed nothing")
    assert len(why) < 400  # a reason is cut; the attempts table has it whole
    assert verdict_line(attempts) == why[:1].lower() + why[1:]
    # None failed: the plain words, and the task is not a failure.
    quiet = Attempts(2, 2, "", nothing)
    assert not failed_unpublished(quiet)
    assert no_winner(quiet) == "None of the 2 attempts changed anything"
    # One won: whatever failed beside it, the task is not a failure.
    assert not failed_unpublished(Attempts(2, 2, "", (failed, report(2, (PASS,), 1)), 2))
