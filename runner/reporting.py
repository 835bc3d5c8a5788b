"""Reporters that compose: keep phases in the store, and tell several audiences at once."""

from __future__ import annotations

from dataclasses import dataclass

from runner.pipeline import Reporter
from runner.results import Phase, TaskResult
from runner.store import TaskStore


@dataclass
class StoreReporter:
    """Records every phase with its timing in the task store."""

    store: TaskStore
    task_id: int

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        await self.store.record_phase(self.task_id, phase)

    async def finished(self, result: TaskResult) -> None:
        return None


@dataclass
class Tee:
    """Every event to every reporter, in order."""

    reporters: tuple[Reporter, ...]

    async def started(self) -> None:
        for reporter in self.reporters:
            await reporter.started()

    async def phase(self, phase: Phase) -> None:
        for reporter in self.reporters:
            await reporter.phase(phase)

    async def finished(self, result: TaskResult) -> None:
        for reporter in self.reporters:
            await reporter.finished(result)
