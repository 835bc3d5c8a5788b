"""The modes' contract: variables, instructions, and the output file's schema and limits."""

from __future__ import annotations

import json

import pytest

from runner import presets
from runner.modes import (
    MAX_FINDINGS,
    MAX_REVIEW_BYTES,
    Answer,
    Finding,
    Mode,
    OutputError,
    at_least,
    instructions,
    mode_of,
    mode_variables,
    parse_output,
    redact,
)

GOOD = {"path": "src/app.py", "line": 3, "severity": "high", "body": "Divides by zero."}


def review(items: object) -> bytes:
    return json.dumps(items).encode()


def test_task_kinds_map_to_modes_and_the_contract_variables() -> None:
    assert [mode_of(k) for k in ("request", "exec", "ask", "plan", "review")] == [
        Mode.CODE, Mode.CODE, Mode.ASK, Mode.PLAN, Mode.REVIEW,
    ]  # fmt: skip
    assert mode_variables(Mode.REVIEW, "/tmp/gantry") == {
        "GANTRY_MODE": "review",
        "GANTRY_OUTPUT_DIR": "/tmp/gantry/output",
    }


def test_instructions_name_the_file_the_base_and_the_review_rules() -> None:
    assert instructions(Mode.CODE, "/s") == ""
    ask = instructions(Mode.ASK, "/s")
    assert "/s/output/answer.md" in ask
    assert "do not change any file" in ask
    assert "/s/output/plan.md" in instructions(Mode.PLAN, "/s")
    text = instructions(Mode.REVIEW, "/s", "abc123", ["## Code review\nNo eval."])
    assert "/s/output/review.json" in text
    assert "`git diff abc123 HEAD`" in text
    assert text.endswith("(from AGENTS.md):\n\n## Code review\nNo eval.")


def test_presets_pass_a_modes_instructions_as_each_cli_expects() -> None:
    codex = presets.invocation("codex", "http://gw:1", "tok", None, "Answer it.")
    assert codex.env["GANTRY_INSTRUCTIONS"] == "Answer it."
    assert codex.command.endswith('-- "$GANTRY_INSTRUCTIONS\n\n$GANTRY_PROMPT" </dev/null')
    claude = presets.invocation("claude", "http://gw:1", "tok", None, "Answer it.")
    assert '--append-system-prompt "$GANTRY_INSTRUCTIONS" -- "$GANTRY_PROMPT"' in claude.command
    plain = presets.invocation("codex", "http://gw:1", "tok")
    assert "GANTRY_INSTRUCTIONS" not in plain.command
    assert "GANTRY_INSTRUCTIONS" not in plain.env


def test_a_valid_review_file_becomes_findings_with_repository_paths() -> None:
    items = [GOOD, GOOD | {"path": "/workspace/./lib/x.py", "severity": "info"}]
    answer = parse_output(Mode.REVIEW, review(items))
    assert answer.findings == (
        Finding("src/app.py", 3, "high", "Divides by zero."),
        Finding("lib/x.py", 3, "info", "Divides by zero."),
    )
    assert parse_output(Mode.REVIEW, b"[]").findings == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "wrote no review.json"),
        (b"  \n", "wrote no review.json"),
        (b"[{", "review.json is not JSON"),
        (review({"findings": []}), "does not follow the schema: the file: Input should be"),
        (review([GOOD | {"line": "3"}]), "[0].line: Input should be a valid integer"),
        (review([GOOD | {"line": 0}]), "[0].line"),
        (review([GOOD | {"severity": "blocker"}]), "[0].severity"),
        (review([GOOD | {"body": ""}]), "[0].body"),
        (review([GOOD | {"extra": 1}]), "[0].extra: Extra inputs are not permitted"),
        (review([GOOD] * (MAX_FINDINGS + 1)), "the file: List should have at most"),
        (review([GOOD | {"path": "../etc/passwd"}]), "a path outside the repository"),
        (review([GOOD | {"path": "/etc/passwd"}]), "a path outside the repository"),
        (b"[" + b" " * MAX_REVIEW_BYTES + b"]", "over the limit of 262,144"),
    ],
)
def test_a_bad_review_file_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(OutputError) as caught:
        parse_output(Mode.REVIEW, data)
    assert reason in str(caught.value)


def test_text_answers_and_their_limits() -> None:
    assert parse_output(Mode.ASK, b"  It is in *bot/*.\n").text == "It is in *bot/*."
    with pytest.raises(OutputError, match=r"wrote no plan\.md"):
        parse_output(Mode.PLAN, b"")
    with pytest.raises(OutputError, match=r"answer\.md is 70,000 bytes"):
        parse_output(Mode.ASK, b"x" * 70_000)


def test_severity_floor_and_redaction() -> None:
    found = [Finding("a", 1, s, "b") for s in ("info", "low", "medium", "critical")]
    assert [f.severity for f in at_least(found, "medium")] == ["medium", "critical"]
    answer = Answer(Mode.REVIEW, "", (Finding("a", 1, "low", "key=s3cret!"),))
    assert redact(answer, ["s3cret!", ""]).findings[0].body == "key=***"
