"""Best of N through the real pipeline on the local executor (no Docker): attempts that fail
drop out and the others go on; when none is left the task fails with every reason; every
attempt's workspace is removed; each attempt's usage is kept for the task page."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from config.loader import Checkout, read_checkout
from config.repo_config import ConfigError
from config.secret_store import SecretStore
from config.settings import Settings
from gantry.local_run import local_task
from runner.local_executor import LocalExecutor
from runner.mirror import Mirrors
from runner.pipeline import PipelineDeps, Published, Source, Work, run_task
from runner.results import Conclusion, Phase, PhaseStatus, TaskResult
from runner.task import Task
from runner.tasklog import TaskLog

CONFIG = """\
image: ignored-by-the-local-executor
agent:
  max_attempts: {max_attempts}
  command: |
{agent}
checks: [grep -qx right answer.txt]
"""
# Attempt 1's agent fails, attempt 2 is right, any other is wrong with a smaller diff.
MIXED = """\
case "$GANTRY_ATTEMPT" in
  1) echo half > answer.txt; exit 1 ;;
  2) printf 'right\\n' > answer.txt; printf 'a\\nb\\n' > notes.txt ;;
  *) echo wrong > answer.txt ;;
esac
"""


class Recorder:
    def __init__(self) -> None:
        self.phases: list[Phase] = []

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        self.phases.append(phase)

    async def finished(self, result: TaskResult) -> None:
        return None


class KeepWork:
    def __init__(self) -> None:
        self.work: list[Work] = []

    async def publish(self, work: Work) -> Published:
        self.work.append(work)
        return Published("https://example.invalid/pull/1")


def project(tmp_path: Path, agent: str, max_attempts: int = 3) -> tuple[Path, str]:
    """A repository with this agent and cap, and its head."""
    root = tmp_path / "project"
    (root / ".github").mkdir(parents=True)
    indented = "\n".join(f"    {line}" for line in agent.splitlines())
    config = CONFIG.format(agent=indented, max_attempts=max_attempts)
    (root / ".github" / "gantry.yml").write_text(config)
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", "start"],
    ):
        subprocess.run(args, cwd=root, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return root, head.stdout.strip()


def local_deps(
    tmp_path: Path,
    root: Path,
    sha: str,
    record_usage: Callable[[Task, dict[str, Any]], Awaitable[None]] | None = None,
) -> PipelineDeps:
    """The pipeline's deps for the project at `sha` on the local executor, 3 attempts at most."""
    checkout = read_checkout(root, Settings(data_dir=tmp_path / "data"))

    async def load(_task: Task, _source: Source) -> Checkout | ConfigError:
        return checkout

    async def source(_task: Task) -> Source:
        return Source(sha, None, None)

    deps = PipelineDeps(
        environments=LocalExecutor(Mirrors(tmp_path / "data"), tmp_path / "work"),
        secrets=SecretStore(),
        agent_command=None,
        resolve_source=source,
        load_checkout=load,
        max_attempts=3,
    )
    return deps if record_usage is None else dataclasses.replace(deps, record_usage=record_usage)


async def run(
    tmp_path: Path, agent: str, asked: int, max_attempts: int = 3
) -> tuple[TaskResult, Recorder, KeepWork, list[dict[str, Any]]]:
    root, sha = project(tmp_path, agent, max_attempts)
    recorded: list[dict[str, Any]] = []

    async def record_usage(_task: Task, usage: dict[str, Any]) -> None:
        recorded.append(usage)

    deps = local_deps(tmp_path, root, sha, record_usage)
    task = dataclasses.replace(local_task(root, "answer it", 7), best_of=asked)
    reporter, publisher = Recorder(), KeepWork()
    tasklog = TaskLog(tmp_path / "task.log")
    try:
        result = await run_task(task, deps, reporter, publisher, tasklog)
    finally:
        tasklog.close()
    assert list((tmp_path / "work").iterdir()) == []  # every attempt's workspace is gone
    return result, reporter, publisher, recorded


def ended(reporter: Recorder, name: str) -> Phase:
    return [p for p in reporter.phases if p.name == name][-1]


async def test_a_failed_attempt_drops_out_and_the_passing_one_is_published(
    tmp_path: Path,
) -> None:
    result, reporter, publisher, recorded = await run(tmp_path, MIXED, asked=3)
    assert result.conclusion is Conclusion.PUBLISHED, result
    [work] = publisher.work
    assert b"+right" in work.patch
    assert b"wrong" not in work.patch
    assert b"half" not in work.patch
    assert work.attempts is not None
    assert result.attempts == work.attempts
    first, second, third = work.attempts.reports
    assert first.error == "agent: the agent exit code 1"
    assert (second.failing, second.diff.lines, third.failing, third.diff.lines) == (0, 3, 1, 1)
    assert work.attempts.winner == 2
    assert ended(reporter, "agent") == Phase(
        "agent", PhaseStatus.DONE, ended(reporter, "agent").seconds, "attempt 1 failed"
    )
    checks = ended(reporter, "checks")
    assert (checks.status, checks.note) == (PhaseStatus.DONE, "attempt 2 passed; attempt 3 failed")
    [record] = recorded
    listed = record["attempts"]["list"]
    assert [a["number"] for a in listed] == [1, 2, 3]
    assert "+wrong" in listed[2]["patch"]
    assert listed[0]["error"] == "agent: the agent exit code 1"
    log = (tmp_path / "task.log").read_text()
    assert "[collect] [gantry] attempt 2 of 3 won: its checks passed" in log


async def test_when_every_attempt_fails_the_task_fails_with_each_reason(tmp_path: Path) -> None:
    agent = 'echo "no $GANTRY_ATTEMPT" > answer.txt; exit 3'
    result, reporter, publisher, recorded = await run(tmp_path, agent, 2)
    assert (result.conclusion, result.failed_phase) == (Conclusion.FAILED, "agent")
    assert result.reason == (
        "no attempt got through the agent phase: attempt 1: agent: the agent exit code 3; "
        "attempt 2: agent: the agent exit code 3"
    )
    assert ended(reporter, "agent").status is PhaseStatus.FAILED
    assert publisher.work == []
    [record] = recorded  # the task page still shows how each attempt ended
    assert [(a["number"], a["error"]) for a in record["attempts"]["list"]] == [
        (1, "agent: the agent exit code 3"),
        (2, "agent: the agent exit code 3"),
    ]
    assert record["attempts"]["winner"] is None


async def test_the_repository_caps_the_count_and_says_so(
    tmp_path: Path,
) -> None:
    result, reporter, publisher, recorded = await run(
        tmp_path, "echo right > answer.txt", asked=3, max_attempts=1
    )
    assert result.attempts is not None
    assert (result.attempts.asked, result.attempts.allowed) == (3, 1)
    assert result.attempts.limited_by == "`agent.max_attempts` in .github/gantry.yml"
    environment = ended(reporter, "environment")
    assert environment.note == (
        "1 attempt (asked for 3; the most `agent.max_attempts` in .github/gantry.yml allows)"
    )
    assert len(recorded[0]["attempts"]["list"]) == 1
    assert result.conclusion is Conclusion.PUBLISHED
    assert len(publisher.work) == 1


class Watched(TaskLog):
    """A log that says when `count` lines ending in `mark` have been written."""

    def __init__(self, path: Path, mark: str, count: int) -> None:
        super().__init__(path)
        self.mark, self.left, self.seen = mark, count, asyncio.Event()

    def line(self, phase: str, text: str) -> None:
        super().line(phase, text)
        if text.endswith(self.mark):
            self.left -= 1
            if self.left == 0:
                self.seen.set()


async def test_a_stopped_task_removes_every_attempts_workspace(tmp_path: Path) -> None:
    root, sha = project(tmp_path, 'echo "attempt $GANTRY_ATTEMPT waits"; sleep 60')
    task = dataclasses.replace(local_task(root, "answer it", 8), best_of=2)
    tasklog = Watched(tmp_path / "task.log", " waits", 2)
    running = asyncio.create_task(
        run_task(task, local_deps(tmp_path, root, sha), Recorder(), KeepWork(), tasklog)
    )
    await asyncio.wait_for(tasklog.seen.wait(), 30)  # both agents are running
    assert len(list((tmp_path / "work").iterdir())) == 2
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    tasklog.close()
    assert list((tmp_path / "work").iterdir()) == []
