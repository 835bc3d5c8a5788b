"""The pipeline: prepare → environment → agent → checks → collect → publish, one task."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from config.agent_choice import AgentChoice, AgentNotAllowedError
from config.errors import GantryError
from config.loader import Checkout, CommandPlan
from config.repo_config import ConfigError, RepoConfig
from config.secret_store import Secret, SecretStore
from gateway import Budget, ModelGateway, TaskUsage
from runner.agent_step import (
    agent_choice,
    build_step,
    failure_reason,
    provider_keys,
    time_budget,
    usage_line,
    usage_record,
)
from runner.attempts import attempt_count, failed_unpublished, no_winner
from runner.attempts_run import AttemptsRun
from runner.collect import (
    MESSAGE_NAME,
    PATCH_NAME,
    UNBORN_EXIT,
    UNBORN_MAX_BYTES,
    UNBORN_NAME,
    check_script,
    collect_script,
    unborn_refusal,
)
from runner.environment import EnvironmentRequest, PhaseFailedError, from_config
from runner.executor import Executor, RunningEnvironment
from runner.mirror import MirrorError
from runner.mirror import git as mirror_git
from runner.modes import (
    ANSWERED_TEXT,
    AnswerPoster,
    Mode,
    instructions,
    mode_of,
    mode_variables,
    read_output,
    redact,
)
from runner.patch_policy import PatchPolicy, check_change, check_message, check_patch
from runner.publish import applied_change
from runner.results import (
    PHASES,
    RESTART_NOTE,
    SHUTDOWN,
    Attempts,
    CheckOutcome,
    Conclusion,
    EndedThenStopped,
    Phase,
    PhaseStatus,
    TaskResult,
    judge_checks,
    uncancel_current,
)
from runner.service_containers import secret_names, services_of
from runner.task import Task
from runner.tasklog import TaskLog

log = logging.getLogger(__name__)
T = TypeVar("T")
Env = RunningEnvironment
TASK_FILE_NAME = "task.json"
MAX_MESSAGE_BYTES = 64 * 1024
TAIL_LINES = 30
COLLECT_LIMIT_S = 300.0
# The prompt quotes the end of a review comment's hunk (the commented lines are its last).
PROMPT_HUNK_LINES = 30
BACKTICKS = re.compile(r"`{3,}")


class Reporter(Protocol):
    """Where progress goes (GitHub, a terminal)."""

    async def started(self) -> None: ...

    async def phase(self, phase: Phase) -> None: ...

    async def finished(self, result: TaskResult) -> None: ...


@dataclass(frozen=True)
class Work:
    """What the task produced, handed to the publisher."""

    patch: bytes
    message: str
    checks: tuple[CheckOutcome, ...]
    blocked: tuple[str, ...]
    config: RepoConfig
    base_sha: str
    # The agent's model usage line (empty when it used no model through the gateway).
    usage: str = ""
    # A best-of-N task's attempts, the published one among them (None: a single attempt).
    attempts: Attempts | None = None


@dataclass(frozen=True)
class Published:
    """Where the work went (the PR's URL, or a local branch), and the commit pushed for it
    (None when this try pushed nothing: an earlier try of the task did)."""

    url: str
    head_sha: str | None = None


class Publisher(Protocol):
    """Turns the work into a branch and a pull request (or a local branch)."""

    async def publish(self, work: Work) -> Published: ...


@dataclass(frozen=True)
class Source:
    """Where the task's code is: the SHA to check out, and how to read its config."""

    sha: str
    ref: str | None
    token: str | None


class TaskFailedError(GantryError):
    """A phase could not finish; the reason is for people, the tail from the log."""

    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(reason)
        self.phase, self.reason = phase, reason


def reason_of(exc: BaseException) -> str:
    """A failure in words: ours as they say it; anyone else's (GitHub, the network, the
    engine, a bug) with its kind and status, so no failure goes unexplained. Pure."""
    if isinstance(exc, PhaseFailedError):
        return f"`{exc.phase}` {exc.result.describe()}"
    text = str(exc).strip()
    if isinstance(exc, GantryError | OSError) and text:
        return text
    status = getattr(exc, "status_code", None)
    kind = type(exc).__name__ + (f" {int(status)}" if isinstance(status, int) else "")
    return f"{kind}: {text}" if text else kind


def as_failure(phase: str, exc: Exception) -> TaskFailedError:
    """Any exception as the failure of the phase it happened in."""
    if isinstance(exc, TaskFailedError):
        return exc
    if not isinstance(exc, GantryError | OSError):
        log.error("phase %s failed", phase, exc_info=exc)  # unexpected: keep the traceback
    return TaskFailedError(phase, reason_of(exc))


async def no_usage(task: Task, usage: dict[str, Any]) -> None:
    """Usage kept nowhere (a local run prints it instead)."""


async def no_rounds(task: Task) -> list[Task]:
    """No earlier rounds (a local run has no thread)."""
    return []


async def always_wanted(task: Task) -> bool:
    """Nobody else can cancel the task (a local run)."""
    return True


@dataclass
class PipelineDeps:
    """What a run needs from outside."""

    environments: Executor[Any]
    secrets: SecretStore
    agent_command: str | None
    resolve_source: Callable[[Task], Awaitable[Source]]
    load_checkout: Callable[[Task, Source], Awaitable[Checkout | ConfigError]]
    patch_policy: PatchPolicy = field(default_factory=PatchPolicy)
    earlier_tasks: Callable[[Task], Awaitable[list[Task]]] = no_rounds
    # The model gateway (None: agents get no model route, presets cannot run).
    gateway: ModelGateway | None = None
    record_usage: Callable[[Task, dict[str, Any]], Awaitable[None]] = no_usage
    # Posts what ask, plan and review produce (None: those modes cannot run here).
    answers: AnswerPoster | None = None
    # The server's ceiling on a task's `--attempts` (the repository's `agent.max_attempts`
    # caps it further).
    max_attempts: int = 1
    # Whether the task is still to run, as the store says now (False: cancelled, perhaps by
    # another process): a task stopped by a restart says it runs again only then.
    still_wanted: Callable[[Task], Awaitable[bool]] = always_wanted


def task_file(task: Task, sha: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """`GANTRY_TASK_FILE`'s content: what the agent may want to know, and no secrets."""
    review = {"review_comment": review_spot(task)} if task.context is not None else {}
    return {
        "repo": task.repo,
        "number": task.number,
        "is_pull_request": task.is_pull_request,
        "title": task.title,
        "body": task.thread_body,
        "request": task.request,
        "requester": task.requester,
        "comment_id": task.comment_id,
        "base_ref": task.head_ref or task.default_branch,
        "base_sha": sha,
        "rounds": rounds,
        "mode": mode_of(task.kind).value,
    } | review


def review_spot(task: Task) -> dict[str, Any]:
    """Where a review comment asked: path, lines, side, whether outdated, and its hunk."""
    spot = json.loads(task.context or "{}")
    fields = ("path", "start_line", "line", "side", "start_side", "outdated", "diff_hunk")
    return {name: spot.get(name) for name in fields}


def prompt_of(task: Task) -> str:
    """`GANTRY_PROMPT`: the request, and for a review comment a line naming where it sits."""
    if task.context is None:
        return task.request
    spot = review_spot(task)
    hunk = "\n".join(str(spot["diff_hunk"] or "").splitlines()[-PROMPT_HUNK_LINES:])
    fence = "`" * max(3, 1 + max((len(run) for run in BACKTICKS.findall(hunk)), default=0))
    return (
        f"{task.request}\n\n(Asked in a review comment on {where_of(spot)}:\n"
        f"{fence}diff\n{hunk}\n{fence})"
    )


def where_of(spot: dict[str, Any]) -> str:
    """`path, lines 10-14 (RIGHT side)`: where a review comment sits, in words."""
    start, end = spot["start_line"], spot["line"]
    lines = f"lines {start}\u2013{end}" if start not in (None, end) else f"line {end}"
    side = f" ({spot['side']} side)" if spot["side"] else ""
    outdated = ", outdated" if spot["outdated"] else ""
    return f"{spot['path']}" + (f", {lines}" if end is not None else "") + side + outdated


def round_of(task: Task) -> dict[str, Any]:
    """An earlier task on the same thread, as the agent sees it."""
    return {"id": task.id, "request": task.request, "requester": task.requester,
            "state": task.state.value}  # fmt: skip


def describe_blocked(decision: dict[str, Any]) -> str:
    """One blocked network attempt as the PR body lists it."""
    return " ".join(str(decision.get(k, "")) for k in ("method", "target", "reason")).strip()


class Run:
    """One task's run: phases in order, each reported with its timing."""

    def __init__(self, task: Task, deps: PipelineDeps, reporter: Reporter, tasklog: TaskLog):
        self.task, self.deps, self.reporter, self.log = task, deps, reporter, tasklog
        self.secrets: tuple[Secret, ...] = ()
        self.service_secrets: tuple[Secret, ...] = ()  # what `services` name, for them only
        self.usage_line = ""
        self.outcomes: tuple[CheckOutcome, ...] = ()  # the checks' results, once run
        self.blocked: tuple[str, ...] = ()  # the network attempts refused, once collected
        # Set once the work is published (or found empty): from then on the task is over.
        self.outcome: TaskResult | None = None
        # The phase a failure outside any phase's work belongs to (the last one started).
        self.current = PHASES[0]
        self.failed_phases: set[str] = set()
        self.mode = mode_of(task.kind)
        self.instructions = ""  # what a preset is told before the request (modes but code)
        # Which of the task's attempts this run is (`GANTRY_ATTEMPT`), and of how many.
        self.attempt, self.attempts = 1, 1

    async def phase(
        self,
        name: str,
        work: Callable[[], Awaitable[Any]],
        note: str = "",
        judge: Callable[[Phase, Any], Phase] | None = None,
    ) -> Any:
        """Run a phase, reporting it running, then done (as `judge` sees its result) or
        failed, with its time."""
        self.current = name
        await self.reporter.phase(Phase(name, PhaseStatus.RUNNING))
        self.log.line(name, f"[gantry] {name} started")
        started = time.monotonic()
        try:
            result = await work()
        except Exception as exc:
            self.failed_phases.add(name)
            await self.reporter.phase(Phase(name, PhaseStatus.FAILED, time.monotonic() - started))
            raise as_failure(name, exc) from exc
        seconds = time.monotonic() - started
        self.log.line(name, f"[gantry] {name} done in {seconds:.1f}s")
        done = Phase(name, PhaseStatus.DONE, seconds, note)
        await self.reporter.phase(judge(done, result) if judge is not None else done)
        return result

    async def skip(self, name: str, note: str) -> None:
        await self.reporter.phase(Phase(name, PhaseStatus.SKIPPED, None, note))

    async def prepare(self) -> tuple[Source, Checkout]:
        source = await self.deps.resolve_source(self.task)
        checkout = await self.deps.load_checkout(self.task, source)
        if isinstance(checkout, ConfigError):
            raise TaskFailedError("prepare", "\n".join(checkout.lines()))
        config = checkout.parsed.config
        self.secrets = self.deps.secrets.resolve(self.task.repo, config.secrets)
        self.service_secrets = self.deps.secrets.resolve(self.task.repo, secret_names(config))
        for secrets in (self.secrets, self.service_secrets):
            self.log.add_secrets(s.value.get_secret_value() for s in secrets)
        provenance = checkout.parsed.provenance
        for value in provenance.capped if provenance is not None else ():
            self.log.line("prepare", f"[gantry] {value.path} = {value.value}: {value.describe()}")
        return source, checkout

    async def agent(self, env: Env, config: RepoConfig, sha: str, *, end: bool = False) -> None:
        """The agent phase; however it ends (or if there is no agent), the gateway's relay
        closes with it: checks and collect never reach the model gateway. With `end`, a
        finished agent's processes are ended too (`end_phase`), while the relay closes."""
        try:
            await self.agent_phase(env, config, sha)
        except BaseException:
            await env.close_gateway()
            raise
        # Both are engine round trips that do not depend on each other; both are over before
        # anything goes on (the first failure, if any, is raised then).
        steps = [env.close_gateway(), *([env.end_phase()] if end else [])]
        for outcome in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def agent_phase(self, env: Env, config: RepoConfig, sha: str) -> None:
        self.current = "agent"
        try:
            choice = agent_choice(self.task, config, self.deps.agent_command)
        except AgentNotAllowedError as exc:
            raise TaskFailedError("agent", str(exc)) from None
        if choice.preset is None and choice.command is None:
            await self.skip("agent", "no agent configured: setup and checks only")
            return
        # The task file went in as the environment was prepared (`scratch_files`).
        path = f"{env.scratch}/{TASK_FILE_NAME}"
        variables = {
            "GANTRY_PROMPT": prompt_of(self.task),
            "GANTRY_TASK_FILE": path,
            "GANTRY_ATTEMPT": str(self.attempt),
            "GANTRY_ATTEMPTS": str(self.attempts),
        }
        variables |= mode_variables(self.mode, env.scratch)
        await self.phase("agent", lambda: self.run_agent(env, config, choice, variables))

    async def scratch_files(self, config: RepoConfig, sha: str) -> tuple[tuple[str, bytes], ...]:
        """The task file (`GANTRY_TASK_FILE`), put in as the environment is prepared; none
        when no agent will run (the agent phase says why)."""
        try:
            choice = agent_choice(self.task, config, self.deps.agent_command)
        except AgentNotAllowedError:
            return ()
        if choice.preset is None and choice.command is None:
            return ()
        earlier = [round_of(t) for t in await self.deps.earlier_tasks(self.task)]
        data = json.dumps(task_file(self.task, sha, earlier), indent=2).encode()
        return ((TASK_FILE_NAME, data),)

    async def run_agent(
        self, env: Env, config: RepoConfig, choice: AgentChoice, variables: dict[str, str]
    ) -> None:
        """The agent with a gateway token that is valid for exactly this run."""
        gateway, task_id = self.deps.gateway, self.gateway_id
        url = env.gateway_url
        budget = Budget.of(config.agent.budget)
        token = None
        if gateway is not None and url is not None:
            keys = provider_keys(self.deps.secrets.available(self.task.repo))
            # The session log on the task page masks what the task log masks; the agent's
            # network policy decides which provider-side tools its requests may use.
            secrets, network = self.log.redactor.needles, config.network.agent
            token = gateway.open_task(task_id, budget, keys, secrets, network)
            budget = budget.capped(gateway.ceilings)
        usage = None
        try:
            step = build_step(choice, url, token, self.instructions)
            self.log.line("agent", f"[gantry] agent: {step.label}")
            timeout = config.timeouts.agent.total_seconds()
            limit = min(timeout, budget.seconds)
            result = await env.run(
                step.command, self.log, "agent", limit, {**variables, **step.env}
            )
        finally:
            if token is not None and gateway is not None:
                usage = gateway.close_task(task_id)
                await self.keep_usage(choice.describe(), usage)
        reason = failure_reason(usage, result, time_budget(budget.seconds, timeout))
        if reason is not None:
            raise TaskFailedError("agent", reason)

    @property
    def gateway_id(self) -> str:
        """The run's name at the model gateway: each attempt has its own token and budget."""
        task = str(self.task.id)
        return task if self.attempts == 1 else f"{task}.{self.attempt}"

    async def keep_usage(self, label: str, usage: TaskUsage) -> None:
        """Note the model usage for the reports (if the agent used a model at all), the log
        and the task page."""
        line = usage_line(label, usage)
        self.log.line("agent", f"[gantry] {line}")
        if usage.requests:
            self.usage_line = line
        await self.deps.record_usage(self.task, usage_record(label, usage))

    async def checks(
        self, env: Env, checkout: Checkout, changed: list[str], config: RepoConfig
    ) -> tuple[CheckOutcome, ...]:
        plan: CommandPlan = checkout.plan(changed)
        limit = config.timeouts.checks.total_seconds()
        outcomes = []
        for index, command in enumerate(plan.checks):
            where = f"{env.workspace}/{command.cwd}" if command.cwd else env.workspace
            script = check_script(command.text, where, env.workspace, env.scratch, index == 0)
            result = await env.run(script, self.log, "checks", limit)
            tail = "\n".join(self.log.tail(TAIL_LINES))
            outcomes.append(CheckOutcome(command.text, str(command.origin), result.exit_code, tail))
        return tuple(outcomes)

    async def changes_and_checks(
        self, env: Env, checkout: Checkout, config: RepoConfig, sha: str
    ) -> tuple[CheckOutcome, ...]:
        """The checks that apply to what the agent changed (nested AGENTS.md pick theirs); the
        diff is read only when what changed can make a difference."""
        changed = await self.changed_files(env, sha) if checkout.checks_follow_changes() else []
        return await self.checks(env, checkout, changed, config)

    async def diff(self, env: Env, sha: str, checked: bool = False) -> bytes:
        """The agent's work so far, as a patch against the snapshot (`checked`: as the last
        check left it, not what its leftovers wrote after it)."""
        await self.write_diff(env, sha, checked)
        return await self.read_patch(env)

    async def write_diff(self, env: Env, sha: str, checked: bool = False) -> None:
        """The patch and the agent's commit messages, written in the container's scratch."""
        script = collect_script(sha, env.workspace, env.scratch, checked)
        result = await env.run(script, self.log, "collect", COLLECT_LIMIT_S)
        if result.ok:
            return
        if result.exit_code == UNBORN_EXIT:
            listed = await env.read_file(f"{env.scratch}/{UNBORN_NAME}", UNBORN_MAX_BYTES)
            raise unborn_refusal(listed)
        raise TaskFailedError("collect", f"git diff {result.describe()}")

    async def read_patch(self, env: Env) -> bytes:
        return await env.read_file(f"{env.scratch}/{PATCH_NAME}", self.deps.patch_policy.max_bytes)

    async def changed_files(self, env: Env, sha: str) -> list[str]:
        """The paths the host's own git changed when it applied the patch (never its headers)."""
        mirror = self.deps.environments.mirrors.path(self.task.repo)
        limit = self.deps.patch_policy.max_expanded_bytes
        return list((await applied_change(mirror, sha, await self.diff(env, sha), limit)).paths)

    async def collect(self, env: Env, sha: str) -> tuple[bytes, str]:
        policy = self.deps.patch_policy
        await self.write_diff(env, sha, checked=True)
        # Both files copied out at once: each copy is an engine round trip of its own.
        patch, raw = await asyncio.gather(
            self.read_patch(env), env.read_file(f"{env.scratch}/{MESSAGE_NAME}", MAX_MESSAGE_BYTES)
        )
        message = raw.decode(errors="replace")
        values = [s.value.get_secret_value() for s in (*self.secrets, *self.service_secrets)]
        check_patch(patch, values, policy)
        check_message(raw, values)
        mirror = self.deps.environments.mirrors.path(self.task.repo)
        check_change(await applied_change(mirror, sha, patch, policy.max_expanded_bytes), policy)
        return patch, message


async def run_task(
    task: Task, deps: PipelineDeps, reporter: Reporter, publisher: Publisher, tasklog: TaskLog
) -> TaskResult:
    """Run every phase; whatever happens, the reporter hears how it ended, and the final
    report is never cut off half-way. Once the work is published the task is over: a stop
    after that cannot undo it (a rerun would publish twice); it still reaches whoever asked
    for it, once the report is out, as `EndedThenStopped` with the true result."""
    run = Run(task, deps, reporter, tasklog)
    stop: asyncio.CancelledError | None = None
    try:
        result = await _phases(run, publisher)
    except Exception as exc:
        result = await _after_error(run, exc)
    except asyncio.CancelledError as exc:
        if run.outcome is None:
            await to_the_end(finish_stopped(run, SHUTDOWN in exc.args))
            raise
        result, stop = run.outcome, exc
    try:
        await to_the_end(finish(run, result))
    except asyncio.CancelledError as exc:
        if stop is not None:
            uncancel_current()  # one stop is passed on, however many came
        stop = stop or exc
    if stop is not None:
        raise EndedThenStopped(result) from stop
    return result


async def finish_stopped(run: Run, shutdown: bool) -> None:
    """The report of a task stopped before it ended: a restart's says the task runs again,
    unless it was cancelled meanwhile (the store keeps a cancel over the restart's requeue)."""
    again = shutdown and await still_wanted(run)
    await finish(run, TaskResult(Conclusion.CANCELLED, reason=RESTART_NOTE if again else ""))


async def still_wanted(run: Run) -> bool:
    """Whether the task is still to run; when the store cannot say, it is (as it was)."""
    try:
        return await run.deps.still_wanted(run.task)
    except Exception:
        log.warning("task %s: could not read whether it was cancelled", run.task.id, exc_info=True)
        return True


async def _after_error(run: Run, exc: Exception) -> TaskResult:
    """How an exception ends the task: published work stays published, a stop whose cleanup
    failed on the way out is still a stop, anything else fails the phase it happened in."""
    if run.outcome is not None:
        log.error("task %s: after publishing: %s", run.task.id, reason_of(exc), exc_info=exc)
        return run.outcome
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        await to_the_end(finish(run, TaskResult(Conclusion.CANCELLED)))
        raise asyncio.CancelledError from exc
    return await failed(run, as_failure(run.current, exc))


async def failed(run: Run, exc: TaskFailedError) -> TaskResult:
    """The failed result; a phase left running (the failure came between its steps) is
    shown failed too, never as still running."""
    tail = "\n".join(run.log.tail(TAIL_LINES))
    run.log.line(exc.phase, f"[gantry] {exc.phase} failed: {exc.reason}")
    if not run.failed_phases:
        try:
            await run.reporter.phase(Phase(exc.phase, PhaseStatus.FAILED))
        except Exception:
            log.exception("task %s: reporting the failed phase failed", run.task.id)
    return TaskResult(
        Conclusion.FAILED,
        failed_phase=exc.phase,
        reason=exc.reason,
        log_tail=tail,
        usage=run.usage_line,
        checks=run.outcomes,
        blocked=run.blocked,
    )


async def finish(run: Run, result: TaskResult) -> None:
    """Tell the reporters how the task ended; a reporter failing now is logged, and the
    result stands (the worker records it whatever GitHub says)."""
    try:
        await run.reporter.finished(result)
    except Exception:
        log.exception("task %s: the final report failed", run.task.id)


async def to_the_end(step: Awaitable[T]) -> T:
    """Wait for `step` to finish even when this task is cancelled meanwhile (as arq shields
    a job's completion); a stop that came meanwhile is raised once it has finished."""
    future = asyncio.ensure_future(step)
    stop: asyncio.CancelledError | None = None
    while True:
        try:
            value = await asyncio.shield(future)
            break
        except asyncio.CancelledError as exc:
            if future.cancelled():
                raise
            if stop is not None:
                uncancel_current()  # one stop is passed on, however many came
            stop = stop or exc
    if stop is not None:
        raise stop
    return value


async def _phases(run: Run, publisher: Publisher) -> TaskResult:
    await run.reporter.started()
    source, checkout = await run.phase("prepare", run.prepare, judge=judge_prepare)
    config = checkout.parsed.config
    plan = checkout.plan(None)
    request = from_config(
        config,
        plan,
        run.secrets,
        task_id=str(run.task.id),
        repo=run.task.repo,
        clone_url=run.task.clone_url,
        sha=source.sha,
        token=source.token,
        ref=source.ref,
    )
    request = dataclasses.replace(
        request,
        services=services_of(config, run.service_secrets),
        scratch_files=await run.scratch_files(config, source.sha),
    )
    if run.task.best_of > 1 and run.mode is Mode.CODE:
        return await _attempts(run, publisher, request, checkout, source.sha)
    env = await run.phase("environment", lambda: environment(run, request))
    if run.mode is not Mode.CODE:
        return await answer_phases(run, env, checkout, source.sha)
    try:
        # Nothing the agent left running writes on during the checks, nor the checks' during
        # collect: each phase ends with every process it started.
        await run.agent(env, config, source.sha, end=True)
        # Judged as it ends: a failing check is never shown as a ✅ phase, not even meanwhile.
        checks = await run.phase(
            "checks",
            lambda: run.changes_and_checks(env, checkout, config, source.sha),
            judge=judge_checks,
        )
        run.outcomes = checks
        await env.end_phase()
        patch, message = await run.phase("collect", lambda: run.collect(env, source.sha))
        decisions = await run.deps.environments.blocked_attempts(env)
        run.blocked = tuple(describe_blocked(d) for d in decisions)
        work = Work(patch, message, checks, run.blocked, config, source.sha, run.usage_line)
        run.outcome = await publish_work(run, publisher, work)
    finally:
        # The idle container goes once the work is published (or the task failed): removing
        # it and its proxy beside the push took the host's CPU from the push and the PR.
        await to_the_end(run.deps.environments.release(env))
    return run.outcome


async def _attempts(
    run: Run, publisher: Publisher, request: EnvironmentRequest, checkout: Checkout, sha: str
) -> TaskResult:
    """`--attempts N`: N attempts side by side (runner/attempts.py); the best is published."""
    config = checkout.parsed.config
    asked = run.task.best_of
    allowed, limited_by = attempt_count(asked, config.agent.max_attempts, run.deps.max_attempts)
    best = await AttemptsRun(run, environment, request, checkout, sha)(asked, allowed, limited_by)
    run.outcomes = best.checks
    run.blocked = tuple(describe_blocked(d) for d in best.blocked)
    if failed_unpublished(best.attempts):
        # Some attempts failed and the rest changed nothing: failed, as one attempt would be
        # (not "no changes": a failed attempt may have changed what the request needed).
        await run.skip("publish", "nothing to publish")
        run.outcome = TaskResult(
            Conclusion.FAILED,
            checks=best.checks,
            reason=f"{no_winner(best.attempts)}.",
            attempts=best.attempts,
        )
        return run.outcome
    work = Work(
        best.patch, best.message, best.checks, run.blocked, config, sha, best.usage, best.attempts
    )
    run.outcome = await publish_work(run, publisher, work)
    return run.outcome


def judge_prepare(phase: Phase, prepared: tuple[Source, Checkout]) -> Phase:
    """The prepare phase says what the operator's ceilings capped, if anything."""
    provenance = prepared[1].parsed.provenance
    note = provenance.capped_note() if provenance is not None else ""
    return replace(phase, note=note) if note else phase


async def environment(run: Run, request: EnvironmentRequest) -> Env:
    """Build or resume the environment; the executor snapshots the tree the agent starts
    from and makes its output directory as it prepares (in the checkout's exec, if it can)."""
    env: Env = await run.deps.environments.prepare(request, run.log)
    return env


async def publish_work(run: Run, publisher: Publisher, work: Work) -> TaskResult:
    """Publish the work, or say there is nothing to publish."""
    if not work.patch.strip():
        await run.skip("publish", "no changes")
        return TaskResult(
            Conclusion.NO_CHANGES,
            checks=work.checks,
            blocked=work.blocked,
            usage=work.usage,
            attempts=work.attempts,
        )

    async def publish() -> TaskResult:
        published = await publisher.publish(work)
        # The task is over from here, before the phase is even reported done: a stop that
        # comes now cannot undo the PR.
        run.outcome = TaskResult(
            Conclusion.PUBLISHED,
            checks=work.checks,
            pull_url=published.url,
            blocked=work.blocked,
            usage=work.usage,
            head_sha=published.head_sha,
            attempts=work.attempts,
        )
        return run.outcome

    result: TaskResult = await run.phase("publish", publish)
    return result


async def answer_phases(run: Run, env: Env, checkout: Checkout, sha: str) -> TaskResult:
    """ask, plan and review: the agent writes one file, Gantry posts it. No checks, no patch,
    nothing pushed; a file that is missing or malformed fails `collect`, so nothing half-posts."""
    config = checkout.parsed.config
    try:
        base = await review_base(run, sha) if run.mode is Mode.REVIEW else None
        rules = [rule for doc in checkout.docs for rule in doc.review_rules]
        run.instructions = instructions(run.mode, env.scratch, base, rules)
        await run.agent(env, config, sha, end=True)
        await run.skip("checks", f"not run in {run.mode} mode")
        answer = await run.phase("collect", lambda: read_output(env, run.mode))
        answer = redact(answer, [s.value.get_secret_value() for s in run.secrets])
        answer = replace(answer, sha=sha)  # what it is about: the commit the agent read
    finally:
        await asyncio.shield(run.deps.environments.release(env))
    poster = run.deps.answers
    if poster is None:
        raise TaskFailedError("publish", f"{run.mode} needs GitHub to post to")

    async def post() -> TaskResult:
        url = await poster.post(answer, config)
        # The task is over from here, before the phase is even reported done: a stop that
        # comes now cannot undo the answer (a rerun would post it twice).
        run.outcome = TaskResult(
            Conclusion.ANSWERED, pull_url=url, reason=ANSWERED_TEXT[run.mode], usage=run.usage_line
        )
        return run.outcome

    result: TaskResult = await run.phase("publish", post)
    return result


async def review_base(run: Run, sha: str) -> str | None:
    """Where a pull request's changes start: the merge base of its head with the default
    branch, from the host's mirror (None when the mirror cannot say)."""
    mirror = run.deps.environments.mirrors.path(run.task.repo)
    branch = f"refs/heads/{run.task.default_branch}"
    try:
        return (await mirror_git(mirror, ["merge-base", branch, sha], {}, None)).strip() or None
    except MirrorError:
        return None
