"""Best of N's pure core: how many attempts run, how big a change is, which attempt wins,
and what the phases and the task page say about them. The run itself: `attempts_run.py`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from runner.results import AttemptReport, Attempts, DiffSize, Phase, PhaseStatus

REPO_LIMIT = "`agent.max_attempts` in .github/gantry.yml"
SERVER_LIMIT = "the server's `GANTRY_MAX_ATTEMPTS`"
# What the task page keeps of each attempt's diff (the winner's is kept whole, as always).
MAX_RECORDED_PATCH = 256 * 1024
# How much of a failed attempt's reason the sentence saying why none was published quotes.
MAX_REASON_CHARS = 200


def attempt_count(asked: int, repo_max: int, server_max: int) -> tuple[int, str]:
    """How many attempts run, and who capped the number (empty: nobody did)."""
    allowed = min(repo_max, server_max)
    if asked <= allowed:
        return max(asked, 1), ""
    return allowed, REPO_LIMIT if repo_max <= server_max else SERVER_LIMIT


def diff_size(patch: bytes) -> DiffSize:
    """Files, added and removed lines of a git patch (binary files count as files only)."""
    files = added = removed = 0
    in_hunk = False
    for line in patch.split(b"\n"):
        if line.startswith(b"diff --git "):
            files, in_hunk = files + 1, False
        elif line.startswith(b"@@"):
            in_hunk = True
        elif in_hunk and line.startswith(b"+"):
            added += 1
        elif in_hunk and line.startswith(b"-"):
            removed += 1
    return DiffSize(files, added, removed, len(patch))


def rank(report: AttemptReport) -> tuple[int, int, int, int]:
    """Better attempts sort first: fewer failing checks, then the smaller diff (lines, then
    bytes), then the earlier attempt."""
    return (report.failing, report.diff.lines, report.diff.bytes, report.number)


def pick_winner(reports: Iterable[AttemptReport]) -> AttemptReport | None:
    """The attempt to publish: of those that finished with a change, the best by `rank`;
    None when no attempt finished with one."""
    candidates = [r for r in reports if not r.error and r.diff.bytes > 0]
    return min(candidates, key=rank, default=None)


def attempts_record(
    attempts: Attempts, patches: dict[int, bytes], limit: int = MAX_RECORDED_PATCH
) -> dict[str, Any]:
    """What the task page keeps of every attempt: its checks, diff size, diff and outcome."""
    return {
        "asked": attempts.asked,
        "allowed": attempts.allowed,
        "limited_by": attempts.limited_by,
        "winner": attempts.winner,
        "list": [report_record(r, patches.get(r.number, b""), limit) for r in attempts.reports],
    }


def report_record(report: AttemptReport, patch: bytes, limit: int) -> dict[str, Any]:
    """One attempt as plain data (its patch cut to `limit` bytes)."""
    shown = patch[:limit].decode(errors="replace")
    cut = len(patch) - limit
    return {
        "number": report.number,
        "error": report.error,
        "usage": report.usage,
        "diff": dataclasses.asdict(report.diff),
        "checks": [dataclasses.asdict(check) for check in report.checks],
        "patch": shown + (f"\n… ({cut:,} more bytes not kept)" if cut > 0 else ""),
    }


def checks_verdict(phase: Phase, finished: Sequence[AttemptReport]) -> Phase:
    """The checks phase of the attempts still going: done when one passed all its checks."""
    passed = [r.number for r in finished if r.failing == 0]
    failed = [r.number for r in finished if r.failing]
    parts = [f"{listed(passed)} passed"] if passed else []
    parts += [f"{listed(failed)} failed"] if failed else []
    status = PhaseStatus.DONE if passed else PhaseStatus.FAILED
    return dataclasses.replace(phase, status=status, note="; ".join(parts))


def listed(numbers: Sequence[int]) -> str:
    """`attempt 2`, `attempts 1 and 3`, `attempts 1, 2 and 3`."""
    words = [str(n) for n in numbers]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"attempt{'s' if len(words) > 1 else ''} {text}"


def stage_verdict(phase: Phase, dropped: Sequence[int]) -> Phase:
    """A phase the attempts went through together: which of them dropped out in it."""
    return dataclasses.replace(phase, note=f"{listed(dropped)} failed" if dropped else "")


def failed_unpublished(attempts: Attempts) -> bool:
    """Whether no attempt is published and some failed: the task failed, as a single attempt
    that fails does (a change it made may be what the request needed)."""
    return attempts.winner is None and any(r.error for r in attempts.reports)


def no_winner(attempts: Attempts) -> str:
    """Why no attempt is published: each failed one with its reason, then those that
    changed nothing; or, when none failed, that none changed anything."""
    failed = [r for r in attempts.reports if r.error]
    if not failed:
        return f"None of the {len(attempts.reports)} attempts changed anything"
    parts = [f"attempt {r.number} failed ({short_reason(r.error)})" for r in failed]
    unchanged = [r.number for r in attempts.reports if not r.error]
    if unchanged:
        parts.append(f"{listed(unchanged)} changed nothing")
    return "No attempt produced a change that could be published: " + ", ".join(parts)


def short_reason(error: str, limit: int = MAX_REASON_CHARS) -> str:
    """An attempt's failure on one line, cut to `limit` characters (the table has it whole)."""
    flat = " ".join(error.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def verdict_line(attempts: Attempts) -> str:
    """One line for the log: who won and why, or why no attempt did."""
    if attempts.winner is None:
        why = no_winner(attempts)
        return why[:1].lower() + why[1:]
    won = next(r for r in attempts.reports if r.number == attempts.winner)
    checks = "its checks passed" if won.failing == 0 else f"{won.failing} checks failed"
    return f"attempt {won.number} of {len(attempts.reports)} won: {checks}"
