"""Hostile patches and measurements for the attack tests: built in memory, judged by outcome."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import os
import resource
import threading
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

LINE_BYTES = 52  # git's binary hunks carry at most 52 bytes a line
ZERO_CHUNK = bytes(1 << 20)


def _line(piece: bytes) -> bytes:
    length = len(piece)
    letter = chr(ord("A") + length - 1) if length <= 26 else chr(ord("a") + length - 27)
    return letter.encode() + base64.b85encode(piece + bytes(-length % 4))


def zeros_patch(path: str, size: int) -> bytes:
    """A real `git diff --binary` of a new file of `size` zeros, without writing the file."""
    deflate, blob = zlib.compressobj(9), hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324
    parts, left = [], size
    while left:
        chunk = ZERO_CHUNK[: min(left, len(ZERO_CHUNK))]
        parts.append(deflate.compress(chunk))
        blob.update(chunk)
        left -= len(chunk)
    data = b"".join([*parts, deflate.flush()])
    lines = [_line(data[i : i + LINE_BYTES]) for i in range(0, len(data), LINE_BYTES)]
    return b"".join(
        [
            f"diff --git a/{path} b/{path}\nnew file mode 100644\n".encode(),
            f"index {'0' * 40}..{blob.hexdigest()}\nGIT binary patch\nliteral {size}\n".encode(),
            b"\n".join(lines),
            b"\n\nliteral 0\nHcmV?d00001\n\n",
        ]
    )


def text_patch(old: str, new: str, body: str = "pwned") -> bytes:
    """A new-file text patch with whatever headers an attacker writes."""
    return f"--- {old}\n+++ {new}\n@@ -0,0 +1 @@\n+{body}\n".encode()


def children_peak_rss() -> int:
    """The largest resident set of any child process waited for so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def _measured(call: Callable[[], Awaitable[Any]]) -> tuple[str, int]:
    """In a fresh process: the call's error (or ""), and its children's peak RSS."""
    try:
        asyncio.run(call())  # type: ignore[arg-type]
        error = ""
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return error, children_peak_rss()


async def in_fresh_process(call: Callable[[], Awaitable[Any]]) -> tuple[str, int]:
    """Run an async call where no earlier child process counts: (its error, children's peak)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, _measured, call)


def reset_peak_rss() -> None:
    """Start this process's peak resident set (VmHWM) afresh (Linux's clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def own_peak_rss() -> int:
    """This process's peak resident set since the last reset, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def disk_bytes(root: Path) -> int:
    """Bytes allocated on disk under `root` (sparse files count what they really use)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


class PeakDisk:
    """Polls the disk usage under a directory in a thread; `peak` is the most it saw."""

    def __init__(self, root: Path, interval_s: float = 0.05) -> None:
        self.root, self.interval_s, self.peak = root, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, disk_bytes(self.root))

    def __enter__(self) -> PeakDisk:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, disk_bytes(self.root))
