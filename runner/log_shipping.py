"""Task logs and patches across hosts: a worker ships what it writes into the store as it
goes; the server that shows a task it did not run copies them back into its own files.

Chunks are byte ranges of the log at their offset in the store's copy, so the copy is the
worker's file exactly (a retry on another worker goes on where the store's copy ends)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

SHIP_EVERY_S = 1.0
# What a store keeps of a task for other hosts, dropped once the task is old (see retention).
STORED_TABLES = ("task_logs", "task_patches")
# One chunk's most: a log is capped when written (4 MiB), so a few chunks at most per flush.
CHUNK_BYTES = 1024 * 1024


def prune_sql(table: str, mark: str) -> str:
    """The delete of `table`'s rows of tasks that ended before the time at `mark`."""
    if table not in STORED_TABLES:
        raise ValueError(f"not a table of stored task files: {table!r}")
    return (
        f"delete from {table} where task_id in (select id from tasks where "  # noqa: S608
        f"updated_at < {mark} and state not in ('queued', 'running'))"
    )


class LogStore(Protocol):
    """What shipping needs of the task store."""

    async def append_log(self, task_id: int, start: int, data: bytes) -> None: ...

    async def log_chunks(self, task_id: int, start: int) -> list[tuple[int, bytes]]: ...

    async def log_size(self, task_id: int) -> int: ...

    async def save_patch(self, task_id: int, patch: bytes) -> None: ...

    async def patch(self, task_id: int) -> bytes | None: ...


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_from(path: Path, offset: int, limit: int = CHUNK_BYTES) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(limit)


class LogShipper:
    """Copies what is appended to one task's log file into the store."""

    def __init__(self, store: LogStore, task_id: int, path: Path, at: int, stored: int) -> None:
        self.store, self.task_id, self.path = store, task_id, path
        self.offset, self.stored = at, stored

    @classmethod
    async def start(cls, store: LogStore, task_id: int, path: Path) -> LogShipper:
        """Ship from the file's end now, to the store's copy's end (a retry appends to both)."""
        return cls(store, task_id, path, file_size(path), await store.log_size(task_id))

    async def flush(self) -> None:
        """Ship everything written since the last flush."""
        while file_size(self.path) > self.offset:
            data = await asyncio.to_thread(read_from, self.path, self.offset)
            await self.store.append_log(self.task_id, self.stored, data)
            self.offset += len(data)
            self.stored += len(data)


@contextlib.asynccontextmanager
async def shipping(store: LogStore, task_id: int, path: Path) -> AsyncIterator[None]:
    """Ship the log every second while the body runs, and the rest at its end."""
    shipper = await LogShipper.start(store, task_id, path)

    async def ship_forever() -> None:
        while True:
            await asyncio.sleep(SHIP_EVERY_S)
            try:
                await shipper.flush()
            except Exception:  # the store is away for a moment: the next flush catches up
                log.exception("could not ship task %s's log", task_id)

    loop = asyncio.create_task(ship_forever(), name=f"gantry-ship-{task_id}")
    try:
        yield
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await asyncio.shield(shipper.flush())


async def copy_log(store: LogStore, task_id: int, path: Path) -> None:
    """Append to the local log what the store holds beyond it (a task another host ran)."""
    chunks = await store.log_chunks(task_id, file_size(path))
    if chunks:
        await asyncio.to_thread(append_chunks, path, chunks)


def append_chunks(path: Path, chunks: list[tuple[int, bytes]]) -> None:
    """Append the chunks that continue the file exactly; stop at a gap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        for start, data in chunks:
            if start != handle.tell():
                return
            handle.write(data)


async def copy_patch(store: LogStore, task_id: int, path: Path) -> None:
    """Write the task's patch from the store when this host has none."""
    if await asyncio.to_thread(path.is_file):
        return
    patch = await store.patch(task_id)
    if patch is not None:
        await asyncio.to_thread(write_file, path, patch)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
