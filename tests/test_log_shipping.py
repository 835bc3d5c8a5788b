"""Task logs and patches travel through the store: a server shows what a worker on another
host wrote, byte for byte, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from runner.log_shipping import copy_log, copy_patch, shipping
from runner.store import TaskStore
from runner.task import TaskState
from tests.store_fixtures import any_store, database
from tests.test_task_store import TASK

__all__ = ["any_store", "database"]  # fixtures, used by name


async def test_a_shipped_log_is_copied_exactly_and_a_retry_goes_on_from_its_end(
    any_store: TaskStore, tmp_path: Path
) -> None:
    worker_log, server_log = tmp_path / "worker" / "task-1.log", tmp_path / "server" / "task-1.log"
    worker_log.parent.mkdir()
    async with shipping(any_store, 1, worker_log):
        with worker_log.open("ab") as out:
            out.write(b"[setup] one\n[agent] two \xe2\x9c\x93\n")
        await copy_log(any_store, 1, server_log)  # mid-run: what was shipped so far, or nothing
    await copy_log(any_store, 1, server_log)
    assert server_log.read_bytes() == worker_log.read_bytes()

    retry_log = tmp_path / "other-worker" / "task-1.log"  # the retry runs on another host
    retry_log.parent.mkdir()
    async with shipping(any_store, 1, retry_log):
        retry_log.write_bytes(b"[prepare] again\n" + b"x" * (3 * 1024 * 1024) + b"\n")
    await copy_log(any_store, 1, server_log)
    assert server_log.read_bytes() == worker_log.read_bytes() + retry_log.read_bytes()
    assert await any_store.log_size(1) == server_log.stat().st_size
    await copy_log(any_store, 1, server_log)  # nothing new: nothing appended twice
    assert await any_store.log_size(1) == server_log.stat().st_size


async def test_a_patch_is_copied_once_from_the_store(any_store: TaskStore, tmp_path: Path) -> None:
    path = tmp_path / "patches" / "task-2.patch"
    await copy_patch(any_store, 2, path)
    assert not path.exists()
    await any_store.save_patch(2, b"diff --git a/x b/x\n")
    await copy_patch(any_store, 2, path)
    assert path.read_bytes() == b"diff --git a/x b/x\n"


async def test_stored_logs_and_patches_of_old_ended_tasks_are_pruned(
    any_store: TaskStore,
) -> None:
    ended, running = await any_store.add_task(TASK, "a"), await any_store.add_task(TASK, "b")
    await any_store.set_state(ended.id, TaskState.SUCCEEDED)
    await any_store.set_state(running.id, TaskState.RUNNING)
    for task in (ended, running):
        await any_store.append_log(task.id, 0, b"line\n")
        await any_store.save_patch(task.id, b"diff\n")
    assert await any_store.prune_stored_files(ended_before=0.0) == 0  # nothing that old
    assert await any_store.prune_stored_files(ended_before=time.time() + 60) == 2
    assert (await any_store.log_size(ended.id), await any_store.patch(ended.id)) == (0, None)
    assert (await any_store.log_size(running.id), await any_store.patch(running.id)) == (
        5,
        b"diff\n",
    )
