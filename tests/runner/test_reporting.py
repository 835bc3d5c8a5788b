"""The store's record of a task's phases ends as honest as the progress comment."""

from __future__ import annotations

from pathlib import Path

from runner.reporting import StoreReporter
from runner.results import CheckOutcome, Conclusion, Phase, PhaseStatus, TaskResult
from runner.store import SQLiteTaskStore

FAIL = CheckOutcome("pytest -q", "AGENTS.md:6", 1)


async def reported(tmp_path: Path, result: TaskResult) -> list[Phase]:
    """What the store holds once a task with a finished checks phase ended as `result`."""
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    try:
        reporter = StoreReporter(store, 7)
        await reporter.phase(Phase("checks", PhaseStatus.RUNNING))
        await reporter.phase(Phase("checks", PhaseStatus.DONE, 2.5))
        await reporter.phase(Phase("publish", PhaseStatus.DONE, 1.0))
        await reporter.finished(result)
        return await store.phases(7)
    finally:
        await store.close()


async def test_a_failing_check_is_kept_as_a_failed_checks_phase(tmp_path: Path) -> None:
    result = TaskResult(Conclusion.PUBLISHED, checks=(FAIL,), pull_url="https://g/pull/1")
    phases = {p.name: p for p in await reported(tmp_path, result)}
    assert phases["checks"] == Phase("checks", PhaseStatus.FAILED, 2.5, "failed")
    assert phases["publish"].status is PhaseStatus.DONE


async def test_a_failure_without_outcomes_keeps_the_phase_as_reported(tmp_path: Path) -> None:
    result = TaskResult(Conclusion.FAILED, failed_phase="publish", reason="push refused")
    phases = {p.name: p for p in await reported(tmp_path, result)}
    assert phases["checks"] == Phase("checks", PhaseStatus.DONE, 2.5)
