"""A run's end is total: whatever fails, wherever, the task ends failed with its phase and a
reason, and the reporters hear the end exactly once."""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import gidgethub
import pytest

from config.loader import Checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
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
from runner.results import Conclusion, Phase, PhaseStatus, TaskResult
from runner.task import Task
from runner.tasklog import TaskLog
from tests.bot.test_progress import task_on


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
