"""Temporary directories that a `kill -9` may leave behind, told from those in use.

Each one (`$TMPDIR/<prefix>*`) holds a lock (flock) on its `in-use.lock` for as long as it is
used, and its owner makes what it works in (the marker: a scratch repository, a git home)
only once it holds the lock. A killed process loses its locks, so at a worker's start a
directory whose lock nobody holds and whose marker exists is a leftover; one in use, by this
process or any other, stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

LOCK = "in-use.lock"
# A directory whose marker is not there yet may be one made a moment ago, not yet locked
# (or whose owner waits for a sweep's brief hold): a leftover only once it is this old.
UNSTARTED_GRACE_S = 3600.0
# How often an owner tries the lock again while a sweep holds it (a moment at most).
RETRY_S = 0.01


@contextlib.asynccontextmanager
async def locked_dir(prefix: str) -> AsyncIterator[Path]:
    """A new directory in the temporary directory, locked while in use; removed afterwards.
    The caller makes its marker in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    lock = os.open(path / LOCK, flags, 0o600)
    try:
        while True:  # not a blocking flock in a thread: a cancel would leave it running
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # a sweep looks at it, sees no marker and lets go
                await asyncio.sleep(RETRY_S)
        yield path
    finally:
        try:
            await asyncio.to_thread(shutil.rmtree, path, True)
        finally:
            os.close(lock)  # also when cancelled again meanwhile: no lock outlives its use


def sweep(prefix: str, marker: str, root: Path | None = None, now: float | None = None) -> int:
    """Remove the `prefix*` directories of this user in `root` (the temporary directory)
    that nobody uses; how many went."""
    root = Path(tempfile.gettempdir()) if root is None else root
    now = time.time() if now is None else now
    return sum(1 for path in root.glob(f"{prefix}*") if _swept(path, marker, now))


def _swept(path: Path, marker: str, now: float) -> bool:
    """Remove one directory if it is a leftover; whether it went."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False  # not a directory Gantry made here
    fresh = now - info.st_mtime < UNSTARTED_GRACE_S
    try:
        lock = os.open(path / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        # Made, never locked: its owner locks it at once, so an old one is a leftover.
        if fresh:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # in use
        if fresh and not (path / marker).exists():
            return False  # locked by nobody yet: its owner may be about to
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(lock)
