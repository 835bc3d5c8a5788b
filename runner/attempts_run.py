"""Best of N: several attempts of one task side by side, the one whose checks pass published.

Each attempt has its own container started from the task's one prepared environment (the
cache image setup made; a cache miss builds it once, the others wait for it), its own log
view, its own model-gateway token and budget, and `GANTRY_ATTEMPT` set to its number. The
phases run as one for all attempts (all agents, then all checks, then every collect), so the
progress comment keeps its one checklist; an attempt that fails drops out, the others go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config.errors import GantryError
from config.loader import Checkout
from config.repo_config import RepoConfig
from runner.attempts import (
    attempts_record,
    checks_verdict,
    diff_size,
    pick_winner,
    stage_verdict,
    verdict_line,
)
from runner.environment import EnvironmentRequest
from runner.executor import RunningEnvironment
from runner.results import AttemptReport, Attempts, CheckOutcome, Phase, TaskResult

if TYPE_CHECKING:
    from runner.pipeline import Run

log = logging.getLogger(__name__)
Env = RunningEnvironment
NO_ATTEMPT_LEFT = "no attempt got through the {phase} phase: {reasons}"


class Silent:
    """An attempt's own phases are reported as one for all attempts, not one by one."""

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        return None

    async def finished(self, result: TaskResult) -> None:
        return None


@dataclass
class Attempt:
    """One attempt as it runs: its own run (silent, with its own log view) and container."""

    number: int
    run: Run
    env: Env | None = None
    error: str = ""
    dropped_in: str = ""
    checks: tuple[CheckOutcome, ...] = ()
    patch: bytes = b""
    message: str = ""
    blocked: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.env is not None and not self.error

    def report(self) -> AttemptReport:
        return AttemptReport(
            self.number, self.checks, diff_size(self.patch), self.error, self.run.usage_line
        )


@dataclass(frozen=True)
class BestOf:
    """What the attempts came to: the winner's work (empty when none changed anything)."""

    attempts: Attempts
    patch: bytes = b""
    message: str = ""
    checks: tuple[CheckOutcome, ...] = ()
    blocked: tuple[dict[str, Any], ...] = ()
    usage: str = ""


def attempt_run(run: Run, number: int, count: int) -> Attempt:
    """An attempt of `run`: the same task and deps, its own log view, reporting nothing; its
    model usage is kept with the attempt (the task page shows them all at the end)."""
    attempt: Attempt

    async def keep(_task: Any, usage: dict[str, Any]) -> None:
        attempt.usage = usage

    deps = dataclasses.replace(run.deps, record_usage=keep)
    child = type(run)(run.task, deps, Silent(), run.log.labelled(f"attempt {number}"))
    child.secrets, child.attempt, child.attempts = run.secrets, number, count
    # Its patch is scanned for the services' secrets too, as a single attempt's is.
    child.service_secrets = run.service_secrets
    attempt = Attempt(number, child)
    return attempt


async def each(
    attempts: Sequence[Attempt],
    phase: str,
    step: Callable[[Attempt], Awaitable[None]],
    *,
    together: bool = True,
) -> None:
    """Run `step` for every attempt still going, side by side (or one after the other); one
    that fails drops out with its reason; none left fails the phase."""

    async def one(attempt: Attempt) -> None:
        try:
            await step(attempt)
        except Exception as exc:  # one attempt's failure (even our bug) is not the others'
            if not isinstance(exc, GantryError | OSError):
                log.error("attempt %d: %s failed", attempt.number, phase, exc_info=exc)
            attempt.error, attempt.dropped_in = f"{phase}: {exc or type(exc).__name__}", phase

    going = [attempt for attempt in attempts if not attempt.error]
    if together:
        async with asyncio.TaskGroup() as group:
            for attempt in going:
                group.create_task(one(attempt))
    else:
        for attempt in going:
            await one(attempt)
    if all(a.error for a in attempts):
        reasons = "; ".join(f"attempt {a.number}: {a.error}" for a in attempts if a.error)
        raise GantryError(NO_ATTEMPT_LEFT.format(phase=phase, reasons=reasons))


@dataclass
class AttemptsRun:
    """The attempts of one task from its environment to the chosen work."""

    run: Run
    prepare: Callable[[Run, EnvironmentRequest], Awaitable[Env]]
    request: EnvironmentRequest
    checkout: Checkout
    sha: str
    attempts: list[Attempt] = field(default_factory=list)

    async def __call__(self, asked: int, allowed: int, limited_by: str) -> BestOf:
        run, config = self.run, self.checkout.parsed.config
        self.attempts = [attempt_run(run, n, allowed) for n in range(1, allowed + 1)]
        capped = f" (asked for {asked}; the most {limited_by} allows)" if limited_by else ""
        note = f"{allowed} attempt{'' if allowed == 1 else 's'}{capped}"
        base = Attempts(asked, allowed, limited_by, ())
        try:
            await run.phase("environment", self.environments, note)
            await run.phase("agent", lambda: self.agents(config), judge=self.judge_stage)
            await self.end_phase()
            await run.phase("checks", self.checks, judge=lambda p, _: self.judge_checks(p))
            await self.end_phase()
            await run.phase("collect", self.collect, judge=self.judge_stage)
        except Exception:
            await self.keep_record(self.summary(base))  # how each attempt failed, for the page
            raise
        finally:
            await asyncio.shield(self.release())
        best = self.choose(self.summary(base))
        await self.keep_record(best.attempts)
        return best

    def judge_stage(self, phase: Phase, _result: object) -> Phase:
        return stage_verdict(phase, [a.number for a in self.attempts if a.dropped_in == phase.name])

    def judge_checks(self, phase: Phase) -> Phase:
        return checks_verdict(phase, [a.report() for a in self.attempts if a.alive])

    async def environments(self) -> None:
        async def start(attempt: Attempt) -> None:
            attempt.env = await attempt.run.phase(
                "environment", lambda: self.prepare(attempt.run, self.request)
            )

        # With `cache.ttl: 0s` an image is expired as soon as it is built, and the next
        # lookup removes it: each attempt then sets up on its own, one after the other, so
        # that no attempt's image goes before its container has started from it.
        cached = self.request.cache_ttl_s > 0
        await each(self.attempts, "environment", start, together=cached)

    async def agents(self, config: RepoConfig) -> None:
        await each(self.attempts, "agent", lambda a: a.run.agent(self.env(a), config, self.sha))

    async def checks(self) -> None:
        async def check(attempt: Attempt) -> None:
            env, run = self.env(attempt), attempt.run
            checks = await run.phase(
                "checks", lambda: run.changes_and_checks(env, self.checkout, config, self.sha)
            )
            attempt.checks = checks

        config = self.checkout.parsed.config
        await each(self.attempts, "checks", check)

    async def collect(self) -> None:
        async def collect(attempt: Attempt) -> None:
            env = self.env(attempt)
            collected = attempt.run.phase("collect", lambda: attempt.run.collect(env, self.sha))
            attempt.patch, attempt.message = await collected
            attempt.blocked = await attempt.run.deps.environments.blocked_attempts(env)

        await each(self.attempts, "collect", collect)

    def env(self, attempt: Attempt) -> Env:
        if attempt.env is None:
            raise GantryError(f"attempt {attempt.number} has no environment")
        return attempt.env

    async def end_phase(self) -> None:
        """Stop what the last phase left running in every attempt's container."""
        await asyncio.gather(*(a.env.end_phase() for a in self.attempts if a.alive and a.env))

    async def release(self) -> None:
        """Every attempt's container goes, whatever happened."""
        environments = self.run.deps.environments
        started = [a.env for a in self.attempts if a.env is not None]
        await asyncio.gather(*(environments.release(env) for env in started))

    def summary(self, base: Attempts) -> Attempts:
        """Every attempt's report so far, and the one to publish (if any)."""
        reports = tuple(a.report() for a in self.attempts)
        winner = pick_winner(reports)
        number = winner.number if winner is not None else None
        return dataclasses.replace(base, reports=reports, winner=number)

    def choose(self, summary: Attempts) -> BestOf:
        """The winning attempt's work (or, when none changed anything, the checks of one)."""
        self.run.log.line("collect", f"[gantry] {verdict_line(summary)}")
        chosen = next((a for a in self.attempts if a.number == summary.winner), None)
        if chosen is None:
            finished = next(a for a in self.attempts if a.alive)
            return BestOf(summary, checks=finished.checks)
        return BestOf(
            summary,
            chosen.patch,
            chosen.message,
            chosen.checks,
            tuple(chosen.blocked),
            chosen.run.usage_line,
        )

    async def keep_record(self, attempts: Attempts) -> None:
        """Every attempt's diff and checks (and the winner's model session) for the task page."""
        patches = {a.number: a.patch for a in self.attempts}
        winner = next((a for a in self.attempts if a.number == attempts.winner), None)
        usage = (winner.usage if winner is not None else None) or {}
        record = usage | {"attempts": attempts_record(attempts, patches)}
        await self.run.deps.record_usage(self.run.task, record)
