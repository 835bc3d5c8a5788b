"""What a task run produces, phase by phase: the vocabulary shared by runner and reporters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

PHASES = ("prepare", "environment", "agent", "checks", "collect", "publish")
# The cancel message of a task stopped because the server is shutting down.
SHUTDOWN = "gantry-shutdown"
RESTART_NOTE = "interrupted by a server restart; it runs again when the server is back"


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Phase:
    """A phase of the pipeline: where it is, how long it took, a short note."""

    name: str
    status: PhaseStatus = PhaseStatus.PENDING
    seconds: float | None = None
    note: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """One check command's result: what ran, where it came from, how it ended."""

    command: str
    origin: str
    exit_code: int | None
    tail: str = ""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class DiffSize:
    """How big a change is: files touched, lines added and removed, bytes of patch."""

    files: int = 0
    added: int = 0
    removed: int = 0
    bytes: int = 0

    @property
    def lines(self) -> int:
        return self.added + self.removed


@dataclass(frozen=True)
class AttemptReport:
    """How one of a task's attempts (`--attempts N`) came out."""

    number: int
    checks: tuple[CheckOutcome, ...] = ()
    diff: DiffSize = DiffSize()
    # Why the attempt did not get to the end (`agent: the agent exited 1`); empty if it did.
    error: str = ""
    usage: str = ""

    @property
    def failing(self) -> int:
        """How many of its checks failed."""
        return sum(not check.passed for check in self.checks)


@dataclass(frozen=True)
class Attempts:
    """A best-of-N task's attempts: how many were asked for and allowed, how each did, and
    which one won (None: none changed anything)."""

    asked: int
    allowed: int
    # Who set `allowed` when it is below `asked` (`agent.max_attempts`, the server).
    limited_by: str
    reports: tuple[AttemptReport, ...]
    winner: int | None = None


class Conclusion(StrEnum):
    PUBLISHED = "published"
    NO_CHANGES = "no_changes"
    # A mode but code posted its answer (a comment, a review): `pull_url` links to it.
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TaskResult:
    """How a task ended: published (with the PR), nothing to publish, failed, cancelled."""

    conclusion: Conclusion
    checks: tuple[CheckOutcome, ...] = ()
    failed_phase: str | None = None
    reason: str = ""
    log_tail: str = ""
    pull_url: str | None = None
    blocked: tuple[str, ...] = field(default_factory=tuple)
    # The agent's model usage (`🤖 codex (gpt-5-codex) · model … · 4 requests · …`), if any.
    usage: str = ""
    # The commit Gantry pushed (the PR's new head), once it published.
    head_sha: str | None = None
    # A best-of-N task's attempts (None: a task of one attempt).
    attempts: Attempts | None = None


class EndedThenStopped(asyncio.CancelledError):
    """A stop that came once the task had ended: its final report ran to the end first, then
    the stop goes on to whoever asked for it, with how the task truly ended (published work
    stays published; the task is not run again)."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(f"stopped once the task had ended ({result.conclusion})")
        self.result = result


def uncancel_current() -> None:
    """Take back a cancel request the current task has handled itself."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def initial_phases() -> list[Phase]:
    return [Phase(name) for name in PHASES]


def checks_note(checks: Sequence[CheckOutcome]) -> str:
    """How the checks came out, in a few words: `1 of 3 failed`, `3 passed`."""
    if not checks:
        return "none configured"
    failed = sum(not check.passed for check in checks)
    if len(checks) == 1:
        return "failed" if failed else "passed"
    return f"{failed} of {len(checks)} failed" if failed else f"{len(checks)} passed"


def judge_checks(phase: Phase, checks: Sequence[CheckOutcome]) -> Phase:
    """The checks phase as its outcomes judge it: finished with a failing check is failed."""
    if phase.name != "checks" or phase.status is not PhaseStatus.DONE:
        return phase
    failed = any(not check.passed for check in checks)
    status = PhaseStatus.FAILED if failed else PhaseStatus.DONE
    return replace(phase, status=status, note=checks_note(checks))


def checks_known(result: TaskResult) -> bool:
    """Whether the result carries the checks that ran (a failure or stop may not)."""
    return bool(result.checks) or result.conclusion in (Conclusion.PUBLISHED, Conclusion.NO_CHANGES)


def judged_phases(phases: Sequence[Phase], result: TaskResult) -> list[Phase]:
    """The phases as they stand at the end, the checks phase judged by its outcomes."""
    if not checks_known(result):
        return list(phases)
    return [judge_checks(phase, result.checks) for phase in phases]
