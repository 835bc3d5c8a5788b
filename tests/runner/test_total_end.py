"""A run's end is total: whatever fails, wherever, the task ends failed with its phase and a
reason, and the reporters hear the end exactly once."""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import gidgethub
import pytest

from config.loader import Checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
from gantry.local_run import local_task
from runner.local_executor import LocalExecutor
from runner.mirror import Mirrors
from runner.pipeline import (
    PipelineDeps,
    Published,
    Source,
    TaskFailedError,
    Work,
    as_failure,
    reason_of,
    run_task,
)
from runner.queue import MemoryQueue
from runner.results import Conclusion, EndedThenStopped, Phase, PhaseStatus, TaskResult
from runner.store import SQLiteTaskStore
from runner.task import Task, TaskState
from runner.tasklog import TaskLog
from runner.worker import LeaseTimes, Worker, not_cancelled
from tests.bot.test_progress import task_on
from tests.runner.test_attempts_run import local_deps, project
from tests.test_worker import add


class Recorder:
    """Keeps what a reporter hears; can be told to fail at one event."""

    def __init__(self, fail_at: str = "") -> None:
        self.phases: list[Phase] = []
        self.results: list[TaskResult] = []
        self.fail_at = fail_at

    async def started(self) -> None:
        if self.fail_at == "started":
            raise RuntimeError("a bug in the reporter")

    async def phase(self, phase: Phase) -> None:
        self.phases.append(phase)

    async def finished(self, result: TaskResult) -> None:
        self.results.append(result)
        if self.fail_at == "finished":
            raise aiohttp.ServerDisconnectedError()


class NeverPublish:
    async def publish(self, work: Work) -> Published:
        raise AssertionError("nothing gets this far")


def deps(
    tmp_path: Path,
    source_error: Exception | None,
    source: Callable[[Task], Awaitable[Source]] | None = None,
) -> PipelineDeps:
    async def resolve_source(task: Task) -> Source:
        if source_error is not None:
            raise source_error
        return Source("0" * 40, None, None)

    async def load_checkout(task: object, source: Source) -> Checkout | ConfigError:
        raise AssertionError("not reached")

    mirrors = Mirrors(tmp_path / "data")
    return PipelineDeps(
        environments=LocalExecutor(mirrors, tmp_path / "work"),
        secrets=SecretStore(),
        agent_command=None,
        resolve_source=source or resolve_source,
        load_checkout=load_checkout,
    )


async def run(tmp_path: Path, reporter: Recorder, error: Exception | None) -> TaskResult:
    tasklog = TaskLog(tmp_path / "task.log")
    try:
        return await run_task(
            task_on(3, 1), deps(tmp_path, error), reporter, NeverPublish(), tasklog
        )
    finally:
        tasklog.close()


async def test_a_404_from_github_in_prepare_fails_prepare_with_the_status(tmp_path: Path) -> None:
    reporter = Recorder()
    error = gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND, "Not Found")
    result = await run(tmp_path, reporter, error)
    assert (result.conclusion, result.failed_phase) == (Conclusion.FAILED, "prepare")
    assert result.reason == "BadRequest 404: Not Found"
    assert reporter.phases[-1] == Phase("prepare", PhaseStatus.FAILED, reporter.phases[-1].seconds)
    assert reporter.results == [result]
    assert (
        "[gantry] prepare failed: BadRequest 404: Not Found" in (tmp_path / "task.log").read_text()
    )


async def test_a_bug_outside_any_phase_still_ends_the_task_failed(tmp_path: Path) -> None:
    reporter = Recorder(fail_at="started")
    result = await run(tmp_path, reporter, None)
    assert (result.failed_phase, result.reason) == (
        "prepare",
        "RuntimeError: a bug in the reporter",
    )
    # Nothing had reported the phase: it is shown failed, never left pending or running.
    assert reporter.phases == [Phase("prepare", PhaseStatus.FAILED)]
    assert reporter.results == [result]


async def test_a_failing_final_report_does_not_escape(tmp_path: Path) -> None:
    reporter = Recorder(fail_at="finished")
    error = aiohttp.ClientConnectionError("connection reset")
    result = await run(tmp_path, reporter, error)
    assert (result.failed_phase, result.reason) == (
        "prepare",
        "ClientConnectionError: connection reset",
    )
    assert reporter.results == [result]


async def test_a_stop_whose_cleanup_fails_is_still_a_stop(tmp_path: Path) -> None:
    reached = asyncio.Event()

    async def stuck(task: Task) -> Source:
        reached.set()
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("the cleanup failed")

    reporter = Recorder()
    tasklog = TaskLog(tmp_path / "task.log")
    job = asyncio.create_task(
        run_task(task_on(3, 1), deps(tmp_path, None, stuck), reporter, NeverPublish(), tasklog)
    )
    await reached.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    tasklog.close()
    assert [r.conclusion for r in reporter.results] == [Conclusion.CANCELLED]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            gidgethub.GitHubBroken(http.HTTPStatus.BAD_GATEWAY, "Bad Gateway"),
            "GitHubBroken 502: Bad Gateway",
        ),
        (TimeoutError(), "TimeoutError"),
        (KeyError("head"), "KeyError: 'head'"),
        (OSError("No space left on device"), "No space left on device"),
    ],
)
def test_every_failure_has_a_reason_for_people(error: Exception, reason: str) -> None:
    assert reason_of(error) == reason
    failure = as_failure("publish", error)
    assert (failure.phase, failure.reason) == ("publish", reason)


def test_a_task_failure_keeps_its_own_phase() -> None:
    original = TaskFailedError("collect", "git diff failed")
    assert as_failure("checks", original) is original


class HeldReport:
    """A reporter whose final report (or one phase's report) waits until released, as GitHub
    may keep it waiting; notes whether a report was cut off half-way."""

    def __init__(self, hold_phase: tuple[str, PhaseStatus] | None = None) -> None:
        self.hold_phase = hold_phase
        self.holding, self.release = asyncio.Event(), asyncio.Event()
        self.results: list[TaskResult] = []
        self.cut_off = 0

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        if (phase.name, phase.status) == self.hold_phase:
            await self.hold()

    async def finished(self, result: TaskResult) -> None:
        if self.hold_phase is None:
            await self.hold()
        self.results.append(result)

    async def hold(self) -> None:
        self.holding.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cut_off += 1
            raise


class OnePull:
    """Publishes to a PR (the same one, however often it is asked)."""

    async def publish(self, work: Work) -> Published:
        return Published("https://github.example/octo/hello/pull/9", "c" * 40)


def published_run(
    tmp_path: Path, reporter: HeldReport, task_id: int = 7
) -> Callable[[Task], Coroutine[Any, Any, TaskResult]]:
    """A run of the whole pipeline on the local executor, whose agent changes a file."""
    root, sha = project(tmp_path, "echo right > answer.txt", max_attempts=1)
    deps = local_deps(tmp_path, root, sha)
    return runner_of(tmp_path, local_task(root, "answer it", task_id), deps, reporter, OnePull())


def runner_of(
    tmp_path: Path, local: Task, deps: PipelineDeps, reporter: HeldReport, publisher: Any
) -> Callable[[Task], Coroutine[Any, Any, TaskResult]]:
    """What a worker runs for each task it claims: `local`, under the claimed task's id."""

    async def run_one(task: Task) -> TaskResult:
        tasklog = TaskLog(tmp_path / f"task-{task.id}.log")
        try:
            return await run_task(replace(local, id=task.id), deps, reporter, publisher, tasklog)
        finally:
            tasklog.close()

    return run_one


async def test_a_stop_during_the_final_report_waits_for_it_then_goes_on(tmp_path: Path) -> None:
    reporter = HeldReport()
    run_one = published_run(tmp_path, reporter)
    job = asyncio.create_task(run_one(task_on(3, 1, id=7)))
    await reporter.holding.wait()
    job.cancel()
    job.cancel()  # a second stop changes nothing
    for _ in range(20):
        await asyncio.sleep(0)
    assert not job.done()  # the report is not cut off: the task waits for it
    reporter.release.set()
    with pytest.raises(EndedThenStopped) as stopped:
        await job
    assert job.cancelled()  # the stop reached whoever asked for it
    [result] = reporter.results  # the final report, exactly once and whole
    assert reporter.cut_off == 0
    assert (result.conclusion, result.pull_url) == (
        Conclusion.PUBLISHED,
        "https://github.example/octo/hello/pull/9",
    )
    assert stopped.value.result == result


async def stop_while_held(
    tmp_path: Path, reporter: HeldReport, shutdown: bool
) -> tuple[SQLiteTaskStore, int, asyncio.Task[None]]:
    """A worker runs a task that publishes; once the reporter holds, the worker is stopped
    (a cancel of the task, or a shutdown). The store, the task and the stopping step."""
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    queue = MemoryQueue()
    [task_id] = await add(store, queue, 3)
    worker = Worker(store, queue, published_run(tmp_path, reporter, task_id), max_concurrent=1)
    draining = asyncio.create_task(worker.drain())
    await reporter.holding.wait()
    if not shutdown:
        assert worker.cancel(task_id)

    async def stopping() -> None:
        await (worker.stop() if shutdown else worker.settle())
        await draining

    return store, task_id, asyncio.create_task(stopping())


async def true_end(store: SQLiteTaskStore, task_id: int, reporter: HeldReport) -> None:
    """Published, reported once, recorded as succeeded (never queued to run again)."""
    try:
        [result] = reporter.results
        assert result.conclusion is Conclusion.PUBLISHED
        assert result.pull_url == "https://github.example/octo/hello/pull/9"
        stored = await store.get(task_id)
        assert stored is not None
        assert stored.state is TaskState.SUCCEEDED
    finally:
        await store.close()


@pytest.mark.parametrize("shutdown", [False, True])
async def test_a_worker_stopped_during_the_final_report_records_its_true_end(
    tmp_path: Path, shutdown: bool
) -> None:
    reporter = HeldReport()
    store, task_id, stopping = await stop_while_held(tmp_path, reporter, shutdown)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done()  # the stop waits for the report
    reporter.release.set()
    await stopping
    assert reporter.cut_off == 0
    await true_end(store, task_id, reporter)


@pytest.mark.parametrize("shutdown", [False, True])
async def test_a_stop_once_the_pull_exists_leaves_the_task_published(
    tmp_path: Path, shutdown: bool
) -> None:
    """The PR exists and the publish phase is being reported done when the stop comes: the
    task is over, and it ends published (not cancelled, not queued to publish again)."""
    reporter = HeldReport(hold_phase=("publish", PhaseStatus.DONE))
    store, task_id, stopping = await stop_while_held(tmp_path, reporter, shutdown)
    await stopping
    await true_end(store, task_id, reporter)


class Poster:
    """Where an ask, plan or review posts its answer (GitHub, in the product)."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    async def post(self, answer: Any, _config: Any) -> str:
        self.posted.append(answer.text)
        return f"https://github.example/octo/hello/issues/3#issuecomment-{len(self.posted)}"


@pytest.mark.parametrize("shutdown", [False, True])
async def test_a_stop_once_the_answer_is_posted_leaves_the_task_answered(
    tmp_path: Path, shutdown: bool
) -> None:
    """`ask`: the answer is on GitHub and `publish` is being reported done when the stop
    comes: the task ends answered (not cancelled, not queued to post it again)."""
    root, sha = project(tmp_path, 'echo "the answer" > "$GANTRY_OUTPUT_DIR/answer.md"', 1)
    poster = Poster()
    deps = replace(local_deps(tmp_path, root, sha), answers=poster)
    reporter = HeldReport(hold_phase=("publish", PhaseStatus.DONE))
    asked = replace(local_task(root, "why?", 1), kind="ask")
    run_one = runner_of(tmp_path, asked, deps, reporter, Unused())

    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    queue = MemoryQueue()
    [task_id] = await add(store, queue, 3)
    worker = Worker(store, queue, run_one, max_concurrent=1)
    draining = asyncio.create_task(worker.drain())
    await asyncio.wait_for(reporter.holding.wait(), 30)
    if shutdown:
        await worker.stop()
    else:
        assert worker.cancel(task_id)
        await worker.settle()
    await draining
    stored = await store.get(task_id)
    await store.close()
    assert len(poster.posted) == 1
    assert [r.conclusion for r in reporter.results] == [Conclusion.ANSWERED]
    assert stored is not None
    assert stored.state is TaskState.SUCCEEDED


class Unused:
    """The code publisher, which an answer never reaches."""

    async def publish(self, work: Work) -> Published:
        raise AssertionError("an answer publishes no code")


async def test_a_cancel_from_another_process_then_a_shutdown_ends_cancelled_not_to_rerun(
    tmp_path: Path,
) -> None:
    """Another process (the intake of another server) cancels a running task in the store;
    this worker shuts down before a heartbeat tells it: the task stops as cancelled, and its
    final report says so, not that it runs again after the restart."""
    reached = asyncio.Event()

    async def slow(task: Task) -> Source:
        reached.set()
        await asyncio.sleep(3600)
        raise AssertionError("stopped before this")

    reporter = Recorder()
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    queue = MemoryQueue()
    [task_id] = await add(store, queue, 3)

    async def run_one(task: Task) -> TaskResult:
        tasklog = TaskLog(tmp_path / "task.log")
        try:
            pipeline = deps(tmp_path, None, slow)
            return await run_task(task, pipeline, reporter, NeverPublish(), tasklog)
        finally:
            tasklog.close()

    # No heartbeat comes before the shutdown: the cancel is known only to the store.
    times = LeaseTimes(lease=7200.0, heartbeat=3600.0, poll=3600.0)
    worker = Worker(store, queue, run_one, max_concurrent=1, times=times)
    draining = asyncio.create_task(worker.drain())
    try:
        await asyncio.wait_for(reached.wait(), 30)
        assert await store.cancel_task(task_id) is not None
        await worker.stop()
        await draining
        [result] = reporter.results
        assert (result.conclusion, result.reason) == (Conclusion.CANCELLED, "")
        stored = await store.get(task_id)
        assert stored is not None
        assert stored.state is TaskState.CANCELLED
    finally:
        await store.close()


async def test_a_cancel_written_while_a_restart_stops_the_task_ends_it_cancelled(
    tmp_path: Path,
) -> None:
    """The shutdown's look at the store finds no cancel; one is written while the stopped
    task cleans up, before its final report: the report still says cancelled, as the store
    keeps it, not that the task runs again."""
    reached = asyncio.Event()
    store = await SQLiteTaskStore.open(tmp_path / "gantry.db")
    queue = MemoryQueue()
    [task_id] = await add(store, queue, 3)

    async def slow(task: Task) -> Source:
        reached.set()
        try:
            await asyncio.sleep(3600)
        finally:
            assert await store.cancel_task(task_id) is not None  # another process's cancel
        raise AssertionError("stopped before this")

    reporter = Recorder()

    async def run_one(task: Task) -> TaskResult:
        tasklog = TaskLog(tmp_path / "task.log")
        try:
            pipeline = replace(deps(tmp_path, None, slow), still_wanted=not_cancelled(store))
            return await run_task(task, pipeline, reporter, NeverPublish(), tasklog)
        finally:
            tasklog.close()

    worker = Worker(store, queue, run_one, max_concurrent=1)
    draining = asyncio.create_task(worker.drain())
    try:
        await asyncio.wait_for(reached.wait(), 30)
        await worker.stop()
        await draining
        [result] = reporter.results
        assert (result.conclusion, result.reason) == (Conclusion.CANCELLED, "")
        stored = await store.get(task_id)
        assert stored is not None
        assert stored.state is TaskState.CANCELLED
    finally:
        await store.close()
