"""Reporters that compose: keep phases in the store, and tell several audiences at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.pipeline import Reporter
from runner.results import Phase, TaskResult, judged_phases
from runner.store import TaskStore


@dataclass
class StoreReporter:
    """Records every phase with its timing in the task store; at the end, the checks phase
    as its outcomes judge it (finished with a failing check is failed)."""

    store: TaskStore
    task_id: int
    seen: dict[str, Phase] = field(default_factory=dict)

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        self.seen[phase.name] = phase
        await self.store.record_phase(self.task_id, phase)

    async def finished(self, result: TaskResult) -> None:
        for phase in judged_phases(list(self.seen.values()), result):
            if phase != self.seen[phase.name]:
                await self.phase(phase)


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
