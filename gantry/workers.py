"""The worker runtime: the pipeline run by a worker fed from the queue, with its sweeps.

`gantry serve` runs it beside the intake; `gantry worker` runs it alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import docker

from bot import replies
from bot.background import Background
from bot.progress import trigger_of
from bot.tokens import InstallationTokens
from config.secret_store import read_secret_store
from config.settings import Settings
from gantry.executors import build_executor, engine_client
from gantry.metrics import Metrics
from gantry.task_runner import TaskRunner
from gateway import ModelGateway
from runner.cache_resets import follow_resets
from runner.cleanup import sweep, sweep_forever
from runner.environment import Environments
from runner.executor import Executor
from runner.host_git import sweep_homes
from runner.model_access import running_gateway
from runner.publish import sweep_scratch
from runner.queue import TaskQueue
from runner.retention import prune_forever
from runner.store import TaskStore
from runner.task import Task, TaskState
from runner.worker import LeaseTimes, Worker, Workers, recover_interrupted

log = logging.getLogger(__name__)
GIVEN_UP_TEXT = (
    "Task #{id} was interrupted twice (the server restarted while it ran) and was not "
    "retried again. Comment `@{handle} retry` to run it once more."
)


async def live_tasks(store: TaskStore) -> set[str]:
    """Ids of tasks that may own containers right now."""
    running = await store.with_state(TaskState.RUNNING)
    return {str(task.id) for task in running}


def build_runner(
    settings: Settings,
    executor: Executor[Any],
    tokens: InstallationTokens,
    slug: str,
    store: TaskStore,
    gateway: ModelGateway | None = None,
    metrics: Metrics | None = None,
    ship_logs: bool = False,
) -> TaskRunner:
    return TaskRunner(
        settings=settings,
        environments=executor,
        mirrors=executor.mirrors,
        secrets=read_secret_store(settings.secrets_file),
        github=tokens.client,
        token=tokens.get,
        slug=slug,
        store=store,
        gateway=gateway,
        metrics=metrics or Metrics(),
        ship_logs=ship_logs,
    )


async def report_given_up(
    tasks: list[Task], tokens: InstallationTokens, handle: str, background: Background
) -> None:
    for task in tasks:
        text = GIVEN_UP_TEXT.format(id=task.id, handle=handle)
        gh = tokens.client(task.installation_id)
        background.spawn(replies.comment(gh, trigger_of(task), text), "given-up report")


@contextlib.asynccontextmanager
async def running_workers(
    settings: Settings,
    store: TaskStore,
    queue: TaskQueue,
    tokens: InstallationTokens,
    handle: str,
    background: Background,
    metrics: Metrics | None = None,
    drain: float = 0.0,
    ship_logs: bool = False,
) -> AsyncIterator[Workers]:
    """The engine client and the model gateway, then the worker on them; all closed after
    (running tasks get `drain` seconds to end first). `ship_logs`: a standalone worker's."""
    client = await asyncio.to_thread(engine_client, settings)
    try:
        async with running_gateway(settings, client, metrics) as model:
            executor = build_executor(settings, client, model.route, metrics)
            runner = build_runner(
                settings, executor, tokens, handle, store, model.gateway, metrics, ship_logs
            )
            async with serving(runner, tokens, store, queue, client, background, drain) as workers:
                yield workers
    finally:
        if client is not None:
            await asyncio.to_thread(client.close)


@contextlib.asynccontextmanager
async def serving(
    runner: TaskRunner,
    tokens: InstallationTokens,
    store: TaskStore,
    queue: TaskQueue,
    client: docker.DockerClient | None,
    background: Background,
    drain: float = 0.0,
) -> AsyncIterator[Workers]:
    """Take back this worker's interrupted tasks, start the worker, the lease sweep and the
    periodic cleanups; at the end give running tasks `drain` seconds, then stop them."""
    settings, executor = runner.settings, runner.environments
    owner = worker_name(settings)
    retried, given_up = await recover_interrupted(store, queue, owner)
    await report_given_up(given_up, tokens, runner.slug, background)
    log.info("worker %s: %d interrupted task(s) retried, %d given up", owner, len(retried),
             len(given_up))  # fmt: skip
    if client is not None and isinstance(executor, Environments):
        # Before this worker claims anything: what its previous life left is swept now (its
        # tasks were just queued again), what other workers run stays.
        await sweep(client, await live_tasks(store), executor.cache)
    # Likewise the publish scratch and git homes a killed process left (a live one's is
    # locked: it stays).
    if scratch := await asyncio.to_thread(sweep_scratch):
        log.info("removed %d publish scratch director(ies) left by a stopped process", scratch)
    if homes := await asyncio.to_thread(sweep_homes):
        log.info("removed %d git home director(ies) left by a stopped process", homes)
    times = LeaseTimes.for_lease(settings.task_lease)
    worker = Worker(store, queue, runner, settings.max_concurrent_tasks, owner, times)
    taking_back = take_back_forever(store, queue, tokens, runner.slug, background, times.lease / 2)
    loops = [
        asyncio.create_task(worker.serve(), name="gantry-worker"),
        asyncio.create_task(taking_back, name="gantry-take-back"),
        asyncio.create_task(
            prune_forever(
                settings.data_dir,
                stored=store.prune_stored_files,
                deliveries=store.prune_deliveries,
            ),
            name="gantry-prune",
        ),
    ]
    if client is not None and isinstance(executor, Environments):
        sweeping = sweep_forever(client, lambda: live_tasks(store), executor.cache)
        loops.append(asyncio.create_task(sweeping, name="gantry-sweep"))
        resets = follow_resets(store, executor.cache)
        loops.append(asyncio.create_task(resets, name="gantry-cache-resets"))
    try:
        cache = executor.cache if isinstance(executor, Environments) else None
        yield Workers(worker, loops, cache)
    finally:
        await worker.finish_running(drain)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


def worker_name(settings: Settings) -> str:
    """The name this worker holds its leases under: unique per host and data dir."""
    return settings.worker_name or f"{socket.gethostname()}:{settings.data_dir}"


async def take_back_forever(
    store: TaskStore,
    queue: TaskQueue,
    tokens: InstallationTokens,
    handle: str,
    background: Background,
    every: float,
) -> None:
    """Take back the tasks of workers that died (their lease lapsed), retried once or given up
    and reported; any worker may do it, and each task is taken back once."""
    while True:
        await asyncio.sleep(every)
        try:
            retried, given_up = await recover_interrupted(store, queue)
        except Exception:  # the store is away: the next round tries again
            log.exception("could not look for lapsed task leases")
            continue
        await report_given_up(given_up, tokens, handle, background)
        if retried or given_up:
            log.warning("took back %d task(s) of a dead worker, %d given up",
                        len(retried) + len(given_up), len(given_up))  # fmt: skip
