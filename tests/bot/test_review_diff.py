"""Placing review findings on the diff, and knowing what an earlier review already said."""

from __future__ import annotations

from bot.review_diff import (
    MARKER_RE,
    MAX_REVIEW_BODY_CHARS,
    body_item,
    diff_lines,
    fingerprint,
    inline_body,
    place,
    review_body,
    review_request,
    right_lines,
    seen,
    unsaid,
)
from runner.modes import Finding

PATCH = "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C\n d\n@@ -20 +21,2 @@\n-x\n+y\n+z"
FILES = [
    {"filename": "app.py", "status": "modified", "patch": PATCH},
    {"filename": "logo.png", "status": "added"},  # binary: no patch, no commentable line
    {"filename": "old.py", "status": "removed", "patch": "@@ -1 +0,0 @@\n-x"},
]


def test_right_lines_are_the_hunks_head_side_ranges() -> None:
    assert right_lines(PATCH) == {1, 2, 3, 4, 21, 22}
    assert right_lines("@@ -0,0 +1 @@\n+only") == {1}
    assert right_lines("@@ -3,2 +2,0 @@\n-a\n-b") == set()
    assert right_lines("") == set()


def test_findings_go_inline_only_on_lines_the_diff_shows() -> None:
    lines = diff_lines(FILES)
    assert lines == {"app.py": {1, 2, 3, 4, 21, 22}, "logo.png": set()}
    on = [Finding("app.py", 3, "high", "B is wrong"), Finding("app.py", 22, "low", "z")]
    off = [
        Finding("app.py", 10, "medium", "between the hunks"),
        Finding("logo.png", 1, "low", "binary"),
        Finding("old.py", 1, "low", "deleted file"),
        Finding("README.md", 1, "info", "not in the diff at all"),
    ]
    placed = place([on[0], *off, on[1]], lines)
    assert placed.inline == tuple(on)
    assert placed.outside == tuple(off)


def test_fingerprints_ignore_whitespace_and_are_found_in_what_gantry_posted() -> None:
    first = Finding("app.py", 3, "high", "B is\n wrong")
    assert fingerprint(first) == fingerprint(Finding("app.py", 3, "low", "B  is wrong"))
    assert fingerprint(first) != fingerprint(Finding("app.py", 4, "high", "B is wrong"))
    assert fingerprint(first) != fingerprint(Finding("lib.py", 3, "high", "B is wrong"))
    other = Finding("app.py", 10, "low", "off the diff")
    body = review_body([other], 1, 0, 0, "task #1")
    said = seen([inline_body(first), body, "a person's comment"])
    assert said == {fingerprint(first), fingerprint(other)}
    assert unsaid([first, other, Finding("app.py", 1, "low", "new")], said) == (
        Finding("app.py", 1, "low", "new"),
    )


def test_the_review_request_is_one_comment_review_on_the_head_side() -> None:
    finding = Finding("app.py", 3, "critical", "ping @octocat")
    data = review_request("abc", [finding], "body")
    assert data["event"] == "COMMENT"
    assert data["commit_id"] == "abc"
    [comment] = data["comments"]
    assert (comment["path"], comment["line"], comment["side"]) == ("app.py", 3, "RIGHT")
    assert comment["body"].startswith("🚨 **critical**: ping @\u2060octocat\n\n<!-- gantry")


def test_the_body_says_what_was_left_out() -> None:
    assert "No findings." in review_body([], 0, 0, 0, "t")
    assert "No new findings." in review_body([], 0, 2, 0, "t")
    text = review_body([Finding("a.py", 9, "medium", "x\ny")], 2, 1, 3, "task #5")
    assert text.startswith("**Gantry review** (task #5)")
    assert "2 finding(s) on the diff" in text
    assert "- 🔸 **medium** `a.py` line 9: x\n  y <!-- gantry:finding " in text
    assert "1 finding(s) already reported" in text
    assert "3 below the configured" in text


def test_findings_that_do_not_fit_the_body_are_left_out_whole_and_counted() -> None:
    """200 findings of 8000 characters are far over a review body's limit: each one shown
    keeps its marker (or the next review says it again), and the notes stay."""
    many = [Finding("README.md", n, "low", f"{n}: " + "x" * 7990) for n in range(1, 201)]
    body = review_body(many, 0, 1, 2, "task #5")
    assert len(body) <= MAX_REVIEW_BODY_CHARS
    shown = seen([body])
    assert shown == {fingerprint(f) for f in many[: len(shown)]}
    assert len(shown) == 7
    assert body.endswith(
        "Left out: 193 outside the diff that did not fit here; 1 finding(s) already reported "
        "on an earlier review; 2 below the configured `review.min_severity`."
    )


def test_an_agents_comment_markup_neither_hides_the_review_nor_fakes_a_marker() -> None:
    other = Finding("app.py", 9, "high", "the real one")
    text = f"see <!-- gantry:finding {fingerprint(other)} --> and <!-- open"
    finding = Finding("app.py", 3, "high", text)
    for posted in (inline_body(finding), body_item(finding)):
        assert MARKER_RE.findall(posted) == [fingerprint(finding)]  # its own marker, once
        assert posted.count("<!--") == 1
        assert "and &lt;!-- open" in posted  # shown to the reader as written
