"""The in-process workers of `gantry serve`: the pipeline, fed from the intake's queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import docker

from bot import replies
from bot.background import Background
from bot.progress import trigger_of
from bot.tasks import TaskRunner
from bot.tokens import InstallationTokens
from config.secret_store import read_secret_store
from config.settings import Settings
from gantry.metrics import Metrics
from gateway import ModelGateway
from runner.cache import EnvironmentCache
from runner.cleanup import sweep_forever
from runner.environment import Environments
from runner.executor import Executor
from runner.model_access import running_gateway
from runner.queue import TaskQueue
from runner.retention import prune_forever
from runner.services import build_executor, engine_client
from runner.store import Task, TaskState, TaskStore
from runner.worker import Worker, recover_interrupted

log = logging.getLogger(__name__)
GIVEN_UP_TEXT = (
    "Task #{id} was interrupted twice (the server restarted while it ran) and was not "
    "retried again. Comment `@{handle} retry` to run it once more."
)


@dataclass
class Workers:
    """The running worker and what it needs to be stopped or told to cancel."""

    worker: Worker
    tasks: list[asyncio.Task[None]]
    cache: EnvironmentCache | None = None

    def cancel(self, task_id: int) -> bool:
        return self.worker.cancel(task_id)


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
) -> AsyncIterator[Workers]:
    """The engine client and the model gateway, then the worker on them; all closed after."""
    client = await asyncio.to_thread(engine_client, settings)
    try:
        async with running_gateway(settings, client, metrics) as model:
            executor = build_executor(settings, client, model.route, metrics)
            runner = build_runner(settings, executor, tokens, handle, store, model.gateway, metrics)
            async with serving(runner, tokens, store, queue, client, background) as workers:
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
) -> AsyncIterator[Workers]:
    """Recover interrupted tasks, start the worker and the periodic sweep; stop both after."""
    settings, executor = runner.settings, runner.environments
    retried, given_up = await recover_interrupted(store, queue)
    await report_given_up(given_up, tokens, runner.slug, background)
    log.info("workers: %d interrupted task(s) retried, %d given up", len(retried), len(given_up))
    worker = Worker(store, queue, runner, settings.max_concurrent_tasks)
    loops = [
        asyncio.create_task(worker.serve(), name="gantry-worker"),
        asyncio.create_task(prune_forever(settings.data_dir), name="gantry-prune"),
    ]
    if client is not None and isinstance(executor, Environments):
        sweeping = sweep_forever(client, lambda: live_tasks(store), executor.cache)
        loops.append(asyncio.create_task(sweeping, name="gantry-sweep"))
    try:
        cache = executor.cache if isinstance(executor, Environments) else None
        yield Workers(worker, loops, cache)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await worker.stop()
