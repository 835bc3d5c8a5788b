"""Redaction, line splitting and the size cap of the task log."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.tasklog import MASK, LineSplitter, Redactor, TaskLog


def test_redactor_masks_every_occurrence_longest_first() -> None:
    redact = Redactor(["abc", "abcdef", ""])
    assert redact("x abcdef y abc") == f"x {MASK} y {MASK}"


def test_redactor_masks_each_line_of_a_multiline_secret() -> None:
    redact = Redactor(["-----BEGIN KEY-----\nMIIEsecretbody\nok\n-----END KEY-----"])
    assert redact("line: MIIEsecretbody") == f"line: {MASK}"
    assert redact("ok") == "ok"


def test_safe_cut_never_splits_a_secret() -> None:
    redact = Redactor(["SECRET"])
    text = "xxxxSECRETyyyy"
    assert redact.safe_cut(text, 6) == 4
    assert redact.safe_cut(text, 4) == 4
    assert redact.safe_cut(text, 10) == 10


@given(
    st.lists(st.text(alphabet="ab\nS", max_size=30), max_size=20),
    st.sampled_from(["Sab", "abSba", "SSSS"]),
)
def test_splitting_a_stream_anywhere_never_leaks_a_secret(chunks: list[str], secret: str) -> None:
    redact = Redactor([secret])
    splitter = LineSplitter(redact, max_line=8)
    lines = [line for chunk in [*chunks, secret] for line in splitter.feed(chunk)]
    lines += splitter.flush()
    assert all(secret not in redact(line) for line in lines)
    assert "".join(lines) == "".join([*chunks, secret]).replace("\n", "")


def test_the_log_stops_at_its_cap_and_says_so(tmp_path: Path) -> None:
    log = TaskLog(tmp_path / "t.log", secrets=["pw123"], cap_bytes=40)
    for n in range(10):
        log.line("agent", f"line {n} pw123")
    log.close()
    text = (tmp_path / "t.log").read_text()
    assert text.startswith(f"[agent] line 0 {MASK}\n")
    assert "pw123" not in text
    assert "log truncated at 40 bytes" in text
    assert log.tail(1) == [f"line 9 {MASK}"]


def test_an_attempts_view_marks_its_lines_and_keeps_its_own_tail(tmp_path: Path) -> None:
    log = TaskLog(tmp_path / "task.log", secrets=["hunter2"])
    first, second = log.labelled("attempt 1"), log.labelled("attempt 2")
    first.line("checks", "one says hunter2")
    second.line("checks", "two")
    second.add_secrets(["s3cret"])
    first.line("agent", "leaks s3cret")
    assert first.tail() == [f"one says {MASK}", f"leaks {MASK}"]
    assert second.tail() == ["two"]
    assert log.tail() == [
        f"[attempt 1] one says {MASK}",
        "[attempt 2] two",
        f"[attempt 1] leaks {MASK}",
    ]
    first.close()  # the parent owns the file: the view's close leaves it open
    log.line("collect", "after")
    log.close()
    assert (tmp_path / "task.log").read_text().splitlines() == [
        f"[checks] [attempt 1] one says {MASK}",
        "[checks] [attempt 2] two",
        f"[agent] [attempt 1] leaks {MASK}",
        "[collect] after",
    ]
