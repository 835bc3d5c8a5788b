"""What Gantry writes on GitHub about a task: the PR body and the progress comment. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from runner.attempts import failed_unpublished, no_winner
from runner.results import (
    AttemptReport,
    Attempts,
    CheckOutcome,
    Conclusion,
    DiffSize,
    Phase,
    PhaseStatus,
    TaskResult,
    checks_note,
    judged_phases,
)

MAX_TAIL_LINES = 30
MAX_BLOCKED_LINES = 50
MAX_BODY_CHARS = 60_000  # GitHub refuses bodies over 65,536 characters
# A check run's `output.summary` and `output.text` hold at most 65,535 characters:
# https://docs.github.com/en/rest/checks/runs#create-a-check-run
MAX_SUMMARY_CHARS = 60_000
MOVED_ON = "Gantry pushed {sha}"
MOVED_ON_SUMMARY = "The task's results are in the check run on {sha}, the commit it pushed."
MENTION = re.compile(r"@(?=[A-Za-z0-9])")
# A zero-width joiner after "@" keeps quoted text from notifying the people it names.
MENTION_GUARD = "@\u2060"
# Phases whose log can hold what a secret became (reversed, hex, split): redaction finds
# only the value itself, so their output is never shown in public, only on the task page.
SECRET_PHASES = frozenset({"prepare", "environment"})
# The line the pipeline logs as a phase starts (`Run.phase`): where that phase's own output begins.
PHASE_START = "[gantry] {phase} started"
REPO_TASKS_LINK = "All tasks in this repository"
TAIL_WITHHELD = "This phase ran with the repository's secrets: its log is on the task page only."


PHASE_MARKS = {
    PhaseStatus.PENDING: "⬜",
    PhaseStatus.RUNNING: "⏳",
    PhaseStatus.DONE: "✅",
    PhaseStatus.FAILED: "❌",
    PhaseStatus.SKIPPED: "⏭️",
}


def quiet_mentions(text: str) -> str:
    """Text that names @people without pinging them."""
    return MENTION.sub(MENTION_GUARD, text)


def inert(text: str) -> str:
    """An agent's text as Markdown that pings nobody and opens no HTML comment: an unclosed
    `<!--` hid the rest of a review, and a copied `<!-- gantry:… -->` marker could make a
    later review skip a finding, or `go` carry out an ask's answer as the plan. Shown as
    written (`&lt;` is `<` to a reader); not for code blocks, where it would show as is."""
    return quiet_mentions(text).replace("<!--", "&lt;!--")


def fenced(text: str, info: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def tail_lines(text: str, count: int = MAX_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


def public_tail(tail: str, phase: str | None) -> str:
    """The part of a log tail that may go public: the failed phase's own lines, and nothing
    of a phase that had secrets (a short tail reaches back into setup's output)."""
    if phase is None or phase in SECRET_PHASES:
        return ""
    lines = tail.splitlines()
    marker = PHASE_START.format(phase=phase)
    starts = [n for n, line in enumerate(lines) if line.strip() == marker]
    # No marker in the tail: the phase began before its first line, so all of it is the phase's.
    return "\n".join(lines[starts[-1] + 1 :]) if starts else tail


def inline_code(text: str) -> str:
    """One line as inline code, safe whatever backticks it holds."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {flat} {ticks}" if longest else f"`{flat}`"


def check_table(checks: Sequence[CheckOutcome]) -> str:
    """✅/❌ per command, then the tail of every failure."""
    if not checks:
        return "No check commands are configured (`checks` in .github/gantry.yml or AGENTS.md)."
    rows = ["| | command | from | exit |", "|---|---|---|---|"]
    for check in checks:
        mark = "✅" if check.passed else "❌"
        code = "timeout" if check.exit_code is None else str(check.exit_code)
        cell = inline_code(check.command).replace("|", "\\|")
        rows.append(f"| {mark} | {cell} | {check.origin} | {code} |")
    failures = [
        f"<details><summary>❌ {inline_code(c.command)}</summary>\n\n"
        f"{fenced(quiet_mentions(tail_lines(public_tail(c.tail, 'checks'))), 'text')}\n\n</details>"
        for c in checks
        if not c.passed
    ]
    return "\n".join(rows) + ("\n\n" + "\n\n".join(failures) if failures else "")


def clip(text: str, limit: int = MAX_BODY_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 40].rsplit("\n", 1)[0] + "\n\n…(cut to fit GitHub's limit)"


@dataclass(frozen=True)
class PullRequestReport:
    """Everything the PR body says."""

    request: str
    requester: str
    summary: str
    checks: Sequence[CheckOutcome]
    blocked: Sequence[str] = ()
    closes: int | None = None
    task_url: str | None = None
    usage: str = ""
    attempts: Attempts | None = None


def diff_words(diff: DiffSize) -> str:
    """`+12 -3 in 2 files`, or `no changes`."""
    if not diff.bytes:
        return "no changes"
    return f"+{diff.added} -{diff.removed} in {diff.files} file{'' if diff.files == 1 else 's'}"


def why_won(attempts: Attempts) -> str:
    """The sentence that names the published attempt and why it was picked."""
    count = len(attempts.reports)
    if attempts.winner is None and failed_unpublished(attempts):
        return "No attempt produced a change that could be published."
    if attempts.winner is None:
        return f"{no_winner(attempts)}, so there is nothing to publish."
    won = next(r for r in attempts.reports if r.number == attempts.winner)
    head = f"Attempt {won.number} of {count} was published"
    if won.failing:
        return f"{head}: no attempt passed all its checks, and it had the fewest failing."
    passed = sum(1 for r in attempts.reports if not r.error and r.diff.bytes and not r.failing)
    if passed > 1:
        return f"{head}: its checks passed, and its diff is the smallest of the {passed} that did."
    return f"{head}: its checks passed."


def attempt_row(report: AttemptReport, winner: int | None) -> str:
    """One attempt in the attempts table: its checks, its diff, and what came of it."""
    won = report.number == winner
    number = f"**{report.number}**" if won else str(report.number)
    if report.error:
        reason = quiet_mentions(" ".join(report.error.split())).replace("|", "\\|")
        return f"| {number} | — | — | failed in {reason} |"
    mark = "✅" if report.failing == 0 else "❌"
    outcome = "🏆 published" if won else "not published"
    checks = f"{mark} {checks_note(report.checks)}"
    return f"| {number} | {checks} | {diff_words(report.diff)} | {outcome} |"


def attempts_section(attempts: Attempts) -> str:
    """Which attempt was published and how every attempt did."""
    lines = ["### Attempts", "", why_won(attempts)]
    if attempts.limited_by:
        lines.append(
            f"Asked for {attempts.asked} attempts; {attempts.allowed} ran, the most "
            f"{attempts.limited_by} allows."
        )
    rows = [attempt_row(r, attempts.winner) for r in attempts.reports]
    lines += ["", "| attempt | checks | diff | outcome |", "|---|---|---|---|", *rows]
    return "\n".join(lines)


def blocked_section(blocked: Sequence[str]) -> str:
    """The network attempts the task's policy refused, one per line: the first ones and the
    last (a flood must not push the rest of the report past the cut; the last one says how
    many the proxy did not record)."""
    shown = list(blocked)
    if len(shown) > MAX_BLOCKED_LINES:
        left_out = len(shown) - MAX_BLOCKED_LINES
        shown = [*shown[: MAX_BLOCKED_LINES - 1], f"… {left_out} more …", shown[-1]]
    items = "\n".join(f"- {inline_code(item)}" for item in shown)
    return f"### Blocked network attempts\n\n{items}"


def round_report(result: TaskResult) -> str:
    """A round's results for its pull request: the check table and blocked attempts."""
    parts = [f"### Checks\n\n{check_table(result.checks)}"]
    if result.blocked:
        parts.append(blocked_section(result.blocked))
    return "\n\n".join(parts)


def check_run_conclusion(checks: Sequence[CheckOutcome]) -> str:
    """A check run on a commit the checks ran on: `failure` when one failed, `success`
    only when all passed, `neutral` when there were none."""
    if not checks:
        return "neutral"
    return "success" if all(check.passed for check in checks) else "failure"


def check_run_output(result: TaskResult, task_url: str | None = None) -> dict[str, str]:
    """The check run's `output`: a title that says how the checks went, the full report."""
    title = "No checks" if not result.checks else f"Checks: {checks_note(result.checks)}"
    summary = round_report(result)
    if result.attempts is not None:
        summary += "\n\n" + attempts_section(result.attempts)
    if task_url:
        summary += f"\n\n[Task log]({task_url})"
    return {"title": title, "summary": clip(summary, MAX_SUMMARY_CHARS)}


def started_run_end(
    result: TaskResult, pushed: str | None, task_url: str | None = None
) -> dict[str, object]:
    """How the check run on the head a task started from ends: it points on to the commit
    Gantry pushed; with no changes the checks ran on this very commit and judge it."""
    if pushed is not None:
        output = {
            "title": MOVED_ON.format(sha=pushed[:7]),
            "summary": MOVED_ON_SUMMARY.format(sha=pushed),
        }
        return {"status": "completed", "conclusion": "neutral", "output": output}
    if result.conclusion in (Conclusion.PUBLISHED, Conclusion.NO_CHANGES):
        # Published with its commit unknown (GitHub failed us): the results, but no verdict.
        verdict = "neutral" if result.conclusion is Conclusion.PUBLISHED else None
        conclusion = verdict or check_run_conclusion(result.checks)
        output = check_run_output(result, task_url)
        return {"status": "completed", "conclusion": conclusion, "output": output}
    where = f" in {result.failed_phase}" if result.failed_phase else ""
    title = f"{result.conclusion.value.capitalize()}{where}"
    summary = quiet_mentions(result.reason) or "-"
    if result.attempts is not None:
        summary += "\n\n" + attempts_section(result.attempts)
    summary = clip(summary, MAX_SUMMARY_CHARS)
    conclusion = "failure" if result.conclusion is Conclusion.FAILED else "cancelled"
    return {
        "status": "completed",
        "conclusion": conclusion,
        "output": {"title": title, "summary": summary},
    }


def pr_body(report: PullRequestReport) -> str:
    """The PR body: the request, the change, the checks, blocked network attempts, links."""
    quoted = "\n".join(f"> {line}" for line in quiet_mentions(report.request).splitlines())
    parts = [
        f"@{report.requester} asked:\n\n{quoted or '> (no text)'}",
        f"### What changed\n\n{inert(report.summary).strip() or 'See the diff.'}",
        f"### Checks\n\n{check_table(report.checks)}",
    ]
    if report.attempts is not None:
        parts.append(attempts_section(report.attempts))
    if report.usage:
        parts.append(quiet_mentions(report.usage))
    if report.blocked:
        parts.append(blocked_section(report.blocked))
    links = []
    if report.task_url:
        links.append(f"[Task log]({report.task_url})")
    if report.closes is not None:
        links.append(f"Closes #{report.closes}")
    if links:
        parts.append("\n\n".join(links))
    return clip("\n\n".join(parts))


def progress_comment(
    task_id: int,
    phases: Sequence[Phase],
    task_url: str | None = None,
    *,
    repo_url: str | None = None,
) -> str:
    """The one comment per task, edited in place as phases move; below the phases, the
    task's log and the repository's task list (signed links, when Gantry knows its address)."""
    lines = [f"**Gantry task #{task_id}**", ""]
    for phase in phases:
        timing = f" ({phase.seconds:.1f} s)" if phase.seconds is not None else ""
        note = f": {quiet_mentions(phase.note)}" if phase.note else ""
        lines.append(f"- {PHASE_MARKS[phase.status]} {phase.name}{timing}{note}")
    links = [f"[Task log]({task_url})"] if task_url else []
    if repo_url:
        links.append(f"[{REPO_TASKS_LINK}]({repo_url})")
    if links:
        lines += ["", " · ".join(links)]
    return "\n".join(lines)


def outcome_text(result: TaskResult) -> str:
    """The last lines of the progress comment: what came of the task."""
    if result.conclusion is Conclusion.PUBLISHED:
        return f"🚀 Done: {result.pull_url}"
    if result.conclusion is Conclusion.ANSWERED:
        return f"🚀 Done, {result.reason}: {result.pull_url}"
    if result.conclusion is Conclusion.NO_CHANGES and result.attempts is not None:
        return f"{no_winner(result.attempts)}, so there is no pull request."
    if result.conclusion is Conclusion.NO_CHANGES:
        return "The task ran but changed nothing, so there is no pull request."
    if result.conclusion is Conclusion.CANCELLED:
        return f"Stopped: {result.reason}." if result.reason else "Cancelled."
    where = f" in the **{result.failed_phase}** phase" if result.failed_phase else ""
    text = f"😕 Failed{where}: {quiet_mentions(result.reason)}"
    tail = public_tail(result.log_tail, result.failed_phase)
    if tail.strip():
        text += "\n\n" + fenced(quiet_mentions(tail_lines(tail)), "text")
    elif result.failed_phase in SECRET_PHASES:
        text += f"\n\n{TAIL_WITHHELD}"
    return text


def has_round_report(result: TaskResult) -> bool:
    """Whether a round has results to show on its pull request: it got through its checks
    (a round failing after them, say at publish, shows them all the same)."""
    if result.conclusion in (Conclusion.PUBLISHED, Conclusion.NO_CHANGES):
        return True
    return result.conclusion is Conclusion.FAILED and bool(result.checks)


def final_comment(
    task_id: int,
    phases: Sequence[Phase],
    result: TaskResult,
    task_url: str | None = None,
    *,
    round_results: bool = False,
    repo_url: str | None = None,
) -> str:
    """The progress comment once the task has ended (with the agent's model usage, if any);
    with `round_results`, a pull request's round report: its checks and blocked attempts,
    whenever the round got through its checks."""
    phases = judged_phases(phases, result)
    parts = [progress_comment(task_id, phases, task_url, repo_url=repo_url)]
    if result.usage:
        parts.append(quiet_mentions(result.usage))
    parts.append(outcome_text(result))
    if result.attempts is not None:
        parts.append(attempts_section(result.attempts))
    if round_results and has_round_report(result):
        parts.append(round_report(result))
    return clip("\n\n".join(parts))
