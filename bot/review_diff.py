"""Where review findings go: inline on a line of the pull request's diff, or in the review's
body; and which of them Gantry already said on an earlier review. Pure.

GitHub takes an inline comment only on a line its diff shows (an added or context line of a
hunk, for the RIGHT side: the head's version of the file); anything else is a 422. A file's
`patch` in `GET /pulls/{n}/files` holds its hunks (absent for binary or very large diffs).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.reports import inert
from runner.modes import Finding

HUNK_RE = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)
MARKER = "<!-- gantry:finding {} -->"
MARKER_RE = re.compile(r"<!-- gantry:finding ([0-9a-f]{16}) -->")
SEVERITY_MARKS = {"info": "💬", "low": "🔹", "medium": "🔸", "high": "🔴", "critical": "🚨"}
MAX_REVIEW_BODY_CHARS = 60_000
# Room in the review body for its heading, counts and notes around the findings.
BODY_RESERVE = 1000
MAX_COMMENT_CHARS = 60_000


@dataclass(frozen=True)
class Placement:
    """Findings split by where they can be shown."""

    inline: tuple[Finding, ...]
    outside: tuple[Finding, ...]


def right_lines(patch: str) -> set[int]:
    """The head-side line numbers a file's patch shows (added and context lines)."""
    lines: set[int] = set()
    for match in HUNK_RE.finditer(patch):
        start, count = int(match[1]), int(match[2]) if match[2] is not None else 1
        lines.update(range(start, start + count))
    return lines


def diff_lines(files: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """Path → commentable head-side lines, from `GET /pulls/{n}/files` entries."""
    return {
        str(entry["filename"]): right_lines(str(entry.get("patch") or ""))
        for entry in files
        if entry.get("status") != "removed"
    }


def place(findings: Iterable[Finding], lines: Mapping[str, set[int]]) -> Placement:
    """Inline where the diff shows the finding's line; in the body otherwise."""
    inline: list[Finding] = []
    outside: list[Finding] = []
    for finding in findings:
        shown = finding.line in lines.get(finding.path, set())
        (inline if shown else outside).append(finding)
    return Placement(tuple(inline), tuple(outside))


def fingerprint(finding: Finding) -> str:
    """The same finding (path, line, text) on any review of the pull request."""
    key = "\0".join((finding.path, str(finding.line), " ".join(finding.body.split())))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def seen(bodies: Iterable[str]) -> set[str]:
    """The fingerprints Gantry left in earlier review comments and review bodies."""
    return {match for body in bodies for match in MARKER_RE.findall(body)}


def unsaid(findings: Iterable[Finding], said: set[str]) -> tuple[Finding, ...]:
    return tuple(f for f in findings if fingerprint(f) not in said)


def heading(finding: Finding) -> str:
    return f"{SEVERITY_MARKS[finding.severity]} **{finding.severity}**"


def inline_body(finding: Finding) -> str:
    """An inline comment: severity, the agent's text (mentions quieted), the marker."""
    text = inert(finding.body)[:MAX_COMMENT_CHARS]
    return f"{heading(finding)}: {text}\n\n{MARKER.format(fingerprint(finding))}"


def body_item(finding: Finding) -> str:
    """A finding outside the diff, as a list item of the review's body."""
    text = inert(finding.body).replace("\n", "\n  ")
    where = f"`{finding.path}` line {finding.line}"
    return f"- {heading(finding)} {where}: {text} {MARKER.format(fingerprint(finding))}"


def review_body(
    outside: Sequence[Finding], inline_count: int, repeated: int, hidden: int, task_line: str
) -> str:
    """The review's body: counts, the findings outside the diff, what was left out and why.

    Findings that would not fit are left out whole, and counted: a body cut at its end lost
    the markers of the findings it cut (so the next review said them again) and the notes."""
    parts = [f"**Gantry review** ({task_line})"]
    if not outside and not inline_count:
        parts.append("No new findings." if repeated else "No findings.")
    elif inline_count:
        parts.append(f"{inline_count} finding(s) on the diff, as comments below.")
    items = fitting([body_item(f) for f in outside], MAX_REVIEW_BODY_CHARS - BODY_RESERVE)
    if items:
        parts.append("Findings outside the diff:\n\n" + "\n".join(items))
    notes = []
    if len(items) < len(outside):
        notes.append(f"{len(outside) - len(items)} outside the diff that did not fit here")
    if repeated:
        notes.append(f"{repeated} finding(s) already reported on an earlier review")
    if hidden:
        notes.append(f"{hidden} below the configured `review.min_severity`")
    if notes:
        parts.append("Left out: " + "; ".join(notes) + ".")
    return "\n\n".join(parts)


def fitting(items: Sequence[str], budget: int) -> list[str]:
    """The leading items whose lines fit in `budget` characters."""
    kept: list[str] = []
    for item in items:
        budget -= len(item) + 1
        if budget < 0:
            break
        kept.append(item)
    return kept


def review_request(commit: str | None, inline: Sequence[Finding], body: str) -> dict[str, Any]:
    """`POST /repos/{o}/{r}/pulls/{n}/reviews`: one review, event COMMENT (never approves
    nor blocks), its inline comments on the head side of the diff."""
    data: dict[str, Any] = {"event": "COMMENT", "body": body}
    if commit:
        data["commit_id"] = commit
    data["comments"] = [
        {"path": f.path, "line": f.line, "side": "RIGHT", "body": inline_body(f)} for f in inline
    ]
    return data
