"""The task model: what a request becomes, where it is in its life, and the thread it is on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (TaskState.QUEUED, TaskState.RUNNING)


@dataclass(frozen=True)
class NewTask:
    """What an accepted request carries into the store."""

    repo: str
    installation_id: int
    number: int
    is_pull_request: bool
    title: str
    clone_url: str
    default_branch: str
    comment_id: int | None
    comment_kind: str
    requester: str
    kind: str
    request: str
    head_ref: str | None
    head_sha: str | None
    thread_body: str
    # The agent and model the requester picked (None: the repository's default).
    agent: str | None = field(default=None, kw_only=True)
    model: str | None = field(default=None, kw_only=True)
    # Where a review comment asked (JSON: path, lines, side, hunk); None for other requests.
    context: str | None = field(default=None, kw_only=True)
    # How many attempts the requester asked for (`--attempts N`; capped when the task runs).
    best_of: int = field(default=1, kw_only=True)


@dataclass(frozen=True)
class TaskBranch:
    """A task's branch, fixed the first time it is chosen, and its PR once that exists; the
    commit the task made for it, kept before the push, and the head that commit is built on."""

    branch: str
    pull_url: str | None = None
    start_sha: str | None = None
    commit_sha: str | None = None


@dataclass(frozen=True)
class Task(NewTask):
    """A stored task."""

    id: int
    delivery_id: str
    state: TaskState
    created_at: float
    updated_at: float


# The stored columns of a task, in the order every store selects them.
TASK_FIELDS = [f.name for f in dataclasses.fields(Task)]


def task_from_row(row: Mapping[str, Any]) -> Task:
    """A stored row (any store's) as a `Task`."""
    values = {name: row[name] for name in TASK_FIELDS}
    values["is_pull_request"] = bool(values["is_pull_request"])
    values["state"] = TaskState(values["state"])
    return Task(**values)


def thread_key(task: NewTask) -> str:
    """Tasks on the same issue or PR share a key and never overlap."""
    return f"{task.repo.lower()}#{task.number}"
