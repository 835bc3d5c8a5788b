"""The store as the queue: what a worker may claim next, and the lease it holds while it runs.

A task is claimable when it is queued and no older task of its thread (issue or PR) is queued
or running: that keeps one task per thread at a time, in the order they were asked, across
every worker. A running task carries its worker's name and a lease that the worker renews; a
task whose lease ran out is taken back (retried once, then given up, as after a crash)."""

from __future__ import annotations

from runner.task import Task, TaskState

# Interruptions a task survives: the first is retried, the next one is given up and reported.
RETRIES = 1

# SQL shared by both stores: a queued task whose thread has nothing older still active.
CLAIMABLE = (
    "t.state = 'queued' and not exists (select 1 from tasks o where o.repo = t.repo "
    "and o.number = t.number and o.id < t.id and o.state in ('queued', 'running'))"
)
# A task not yet over: the only kind a cancel may change (a finished one keeps its end).
ACTIVE = "state in ('queued', 'running')"
# Setting of a task its worker's run of it has ended: in the state the run ended in, except
# that a shutdown's requeue leaves a task cancelled meanwhile (by another process, before a
# heartbeat told the worker) cancelled. A run's true end (published, failed) is kept.
FINISH = (
    "state = case when state = 'cancelled' and {state} = 'queued' then state else {state} end, "
    "lease_owner = null, lease_until = null, updated_at = {now}"
)
# A running task to take back: its lease ran out (or it never had one: a database from
# before leases), or it is this worker's own from before a restart.
EXPIRED = (
    "state = 'running' and (lease_until is null or lease_until < {now} or lease_owner = {owner})"
)
# Setting of an expired task: one more interruption, queued again or given up.
TAKE_BACK = (
    "attempts = attempts + 1, lease_owner = null, lease_until = null, updated_at = {now}, "
    f"state = case when attempts + 1 <= {RETRIES} then 'queued' else 'failed' end"
)


def split_taken_back(tasks: list[Task]) -> tuple[list[Task], list[Task]]:
    """Tasks taken back from dead workers: (retried, given up)."""
    retried = [t for t in tasks if t.state is TaskState.QUEUED]
    return retried, [t for t in tasks if t.state is not TaskState.QUEUED]
