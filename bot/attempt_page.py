"""The task page's section on a best-of-N task's attempts: each one's outcome, checks and diff,
every piece of text escaped."""

from __future__ import annotations

import html
from typing import Any


def attempts_section(usage: dict[str, Any] | None) -> str:
    """Every attempt of a best-of-N task: its outcome, its checks with their output, its diff."""
    record = (usage or {}).get("attempts")
    if not isinstance(record, dict):
        return ""
    winner = record.get("winner")
    asked, allowed = record.get("asked"), record.get("allowed")
    capped = f"<p>Asked for {asked} attempts; {allowed} ran.</p>" if asked != allowed else ""
    shown = "".join(attempt_html(a, winner) for a in record.get("list") or [])
    return f"<h2>Attempts</h2>{capped}{shown}"


def attempt_html(attempt: dict[str, Any], winner: object) -> str:
    """One attempt: a heading that says how it ended, its checks, its diff."""
    number = attempt.get("number")
    outcome = "published" if number == winner else "not published"
    if attempt.get("error"):
        outcome = f"failed in {attempt['error']}"
    diff = attempt.get("diff") or {}
    size = f"+{diff.get('added', 0)} -{diff.get('removed', 0)} in {diff.get('files', 0)} files"
    rows = "".join(
        f"<tr><td>{'✅' if c.get('exit_code') == 0 else '❌'}</td>"
        f"<td>{html.escape(str(c.get('command')))}</td><td>{html.escape(str(c.get('exit_code')))}"
        f"</td></tr>"
        for c in attempt.get("checks") or []
    )
    tails = "".join(
        f"<pre>{html.escape(str(c.get('tail') or ''))}</pre>"
        for c in attempt.get("checks") or []
        if c.get("exit_code") != 0
    )
    usage = f"<p>{html.escape(str(attempt['usage']))}</p>" if attempt.get("usage") else ""
    return (
        f"<h3>Attempt {html.escape(str(number))}: {html.escape(outcome)} "
        f"({html.escape(size)})</h3>{usage}<table>{rows}</table>{tails}"
        f"<pre>{html.escape(str(attempt.get('patch') or '')) or '(no diff)'}</pre>"
    )
