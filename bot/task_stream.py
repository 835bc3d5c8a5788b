"""A task's log as server-sent events: lines as they are written, phases and state as they
change, and `end` once the task is over and its log drained."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.task_page import phase_json
from runner.results import Phase
from runner.task import ACTIVE_STATES, TaskState

# What one read takes from the file: the most a stream holds in memory at once. Log lines are
# split at 16 KiB when written, so a chunk always ends in a whole line.
CHUNK_BYTES = 64 * 1024
HEARTBEAT = b": keep-alive\n\n"
# Each open stream reads the store once a second; beyond this many, new ones wait (503).
MAX_STREAMS = 100
# How long the browser waits before it reconnects (it resumes at the last event's id).
RETRY = b"retry: 2000\n\n"
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # nginx would otherwise buffer the stream: https://nginx.org/r/proxy_buffering
    "X-Accel-Buffering": "no",
}


@dataclass
class Streams:
    """The server's open log streams: at most `limit`, and all end when the server shuts down
    (browsers reconnect to the next server and resume where they were)."""

    limit: int = MAX_STREAMS
    open: int = 0
    stopping: bool = False

    def admit(self) -> bool:
        """Count one more stream, unless the server is stopping or at its limit."""
        if self.stopping or self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


@dataclass(frozen=True)
class Pace:
    """How often the stream looks at the file and at the store."""

    poll_s: float = 0.25
    status_s: float = 1.0
    heartbeat_s: float = 15.0
    # A final state counts once the log has stayed quiet this long (a cancelled task's
    # container may still be writing its last lines when the state changes).
    grace_s: float = 1.0


@dataclass(frozen=True)
class Status:
    """The task as the store has it (`state` None: the task is gone)."""

    state: TaskState | None
    phases: tuple[Phase, ...]

    @property
    def final(self) -> bool:
        return self.state not in ACTIVE_STATES


def event(name: str, data: object, event_id: int | None = None) -> bytes:
    """One SSE event; its data is one line of JSON, so no text from a task can break the framing."""
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def cut_lines(data: bytes, *, everything: bool) -> tuple[list[str], int]:
    """The whole lines at the start of `data` and the bytes they take (`everything`: the last,
    unterminated piece too)."""
    end = len(data) if everything else data.rfind(b"\n") + 1
    if end == 0:
        return [], 0
    text = data[:end].decode("utf-8", "replace")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines, end


def start_offset(given: str | None, size: int) -> int:
    """Where a stream starts: the client's offset (or `Last-Event-ID`), else the beginning."""
    if given is None or not given.isdecimal():
        return 0
    offset = int(given)
    return offset if offset <= size else 0


def file_size(path: Path) -> int:
    """How much of the log exists (0 before the task has written any)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_chunk(path: Path, offset: int, limit: int = CHUNK_BYTES) -> bytes:
    """At most `limit` bytes of the file from `offset`."""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(limit)


class LogFollower:
    """Follows one task's log file from an offset until the task ends and the file is drained."""

    def __init__(
        self,
        path: Path,
        offset: int,
        status: Callable[[], Awaitable[Status]],
        closed: Callable[[], bool],
        pace: Pace = Pace(),
    ) -> None:
        self.path, self.offset, self.pace = path, offset, pace
        self._status, self._closed = status, closed
        self._seen: Status | None = None
        self._final_since: float | None = None

    async def events(self) -> AsyncGenerator[bytes, None]:
        """The stream's bytes: new lines as they come, the task's status every `status_s`."""
        yield RETRY
        checked = beat = -math.inf
        while not self._closed():
            lines = await self.new_lines(everything=False)
            now = time.monotonic()
            if lines is not None:
                beat = now
                yield lines
            if now - checked >= self.pace.status_s:
                checked = now
                for frame in await self.status_frames(now):
                    yield frame
                if lines is None and self.over(now):
                    async for frame in self.drain():
                        yield frame
                    return
            if lines is None:
                if now - beat >= self.pace.heartbeat_s:
                    beat = now
                    yield HEARTBEAT
                await asyncio.sleep(self.pace.poll_s)

    async def new_lines(self, *, everything: bool) -> bytes | None:
        """An event with the lines written since the last one (at most one chunk), if any."""
        if file_size(self.path) <= self.offset:
            return None
        data = await asyncio.to_thread(read_chunk, self.path, self.offset)
        lines, used = cut_lines(data, everything=everything or len(data) == CHUNK_BYTES)
        if not used:
            return None
        self.offset += used
        return event("lines", {"lines": lines}, self.offset)

    async def status_frames(self, now: float) -> list[bytes]:
        """Events for what changed in the task's state and phases since the last look."""
        status = await self._status()
        seen, self._seen = self._seen, status
        if not status.final:
            self._final_since = None  # running again (requeued after a restart, retried)
        elif self._final_since is None:
            self._final_since = now
        frames = []
        if seen is None or status.phases != seen.phases:
            frames.append(event("phases", {"phases": phase_json(list(status.phases))}))
        if seen is None or status.state != seen.state:
            frames.append(event("state", {"state": status.state}))
        return frames

    def over(self, now: float) -> bool:
        """The task has been over for at least `grace_s` (the caller checks the log is quiet)."""
        return self._final_since is not None and now - self._final_since >= self.pace.grace_s

    async def drain(self) -> AsyncIterator[bytes]:
        """The rest of the file (an unterminated last line too), then `end`."""
        while (frame := await self.new_lines(everything=True)) is not None:
            yield frame
        state = self._seen.state if self._seen is not None else None
        yield event("end", {"state": state}, self.offset)
