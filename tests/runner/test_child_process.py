"""Stopping a child never reaps it: asyncio reads every exit status, none is guessed."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator

import pytest

from runner import child_process

GUESSED = "Unknown child process"


def wait_until_exited(pid: int) -> None:
    """Block (without letting the loop reap) until the child is a zombie."""
    deadline = time.monotonic() + 10
    while not child_process.has_exited(pid):
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)


def guessed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if GUESSED in r.getMessage()]


@pytest.fixture
def loop_reaps_children() -> Iterator[None]:
    """A child watcher that reaps only when the loop runs, so a zombie waits for it."""
    policy = asyncio.get_event_loop_policy()
    previous = policy.get_child_watcher()
    watcher = asyncio.PidfdChildWatcher()
    policy.set_child_watcher(watcher)
    try:
        yield
    finally:
        policy.set_child_watcher(previous)
        watcher.close()


async def test_a_running_child_is_killed() -> None:
    process = await asyncio.create_subprocess_exec("sleep", "30")
    assert not child_process.has_exited(process.pid)
    assert await child_process.stop(process) == -signal.SIGKILL


async def test_a_stopped_child_keeps_its_own_exit_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    for _ in range(20):
        process = await asyncio.create_subprocess_exec("sh", "-c", "exit 3")
        wait_until_exited(process.pid)
        assert await child_process.stop(process) == 3
    assert guessed(caplog) == []


@pytest.mark.usefixtures("loop_reaps_children")
async def test_killing_a_zombie_leaves_it_to_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    process = await asyncio.create_subprocess_exec("sh", "-c", "exit 3")
    wait_until_exited(process.pid)
    # `process.kill()` here would reap the zombie and the loop would report 255.
    child_process.kill(process)
    assert await process.wait() == 3
    assert guessed(caplog) == []
