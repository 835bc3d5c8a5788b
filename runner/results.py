"""What a task run produces, phase by phase: the vocabulary shared by runner and reporters."""

from __future__ import annotations

from dataclasses import dataclass, field
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


class Conclusion(StrEnum):
    PUBLISHED = "published"
    NO_CHANGES = "no_changes"
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


def initial_phases() -> list[Phase]:
    return [Phase(name) for name in PHASES]
