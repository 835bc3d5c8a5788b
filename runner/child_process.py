"""Stopping an asyncio child without reaping it: its exit status is the event loop's to read.

`asyncio.subprocess.Process.kill()` goes through `Popen.send_signal`, which first polls
(`waitpid(pid, WNOHANG)`) so as not to signal a recycled pid. A child that has just exited is
reaped by that poll, before asyncio's child watcher gets to it; the watcher then finds nothing,
logs "Unknown child process pid N, will report returncode 255", and the process's
`returncode` is a guess. Here the child is signalled through a pidfd instead, and only
while it is still running; a child that has exited is left alone for the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


def has_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, looked at without reaping it (`WNOWAIT`)."""
    try:
        state = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # reaped already: the watcher has its status
    return state is not None


def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the child if it still runs; never reap it, never signal a recycled pid."""
    if process.returncode is not None:
        return
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return  # exited and reaped; the loop is about to hear of it
    try:
        # Still unreaped after the pidfd was opened: the pidfd is our child, not a newcomer.
        if not has_exited(process.pid):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


async def stop(process: asyncio.subprocess.Process) -> int:
    """Kill the child if it still runs and wait for the exit status asyncio reads."""
    kill(process)
    return await process.wait()
