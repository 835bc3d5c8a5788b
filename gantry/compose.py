"""The compositions: `serve` (intake, task pages and, by default, workers) and `worker`
(workers only) are built here from the same parts of `bot/` and `runner/`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import gidgethub
from aiohttp import web

from bot import missed_deliveries, replies
from bot.app import SERVICES, SETTINGS, Services, handle_delivery, web_app
from bot.background import Background
from bot.github_app import fetch_app
from bot.inbox import Inbox, retry_delays
from bot.intake import Intake
from bot.permissions import PermissionCache
from bot.repo_triggers import TriggerCache
from bot.tokens import InstallationTokens
from config.errors import SettingsError
from config.settings import Settings, load_settings
from gantry.metrics import METRICS, Metrics
from gantry.metrics import serving as metrics_listener
from gantry.workers import running_workers, worker_name
from runner.cache_resets import RESET_POLL_S
from runner.retention import prune_forever
from runner.store import TaskStore
from runner.stores import open_store, task_wakeups
from runner.worker import Workers

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# At shutdown, deliveries still being handled get this long; the rest stay pending in the
# store and are handled at the next start.
INBOX_SHUTDOWN_WAIT = 5.0


def create_app(
    settings: Settings, *, store: TaskStore | None = None, workers: bool = True
) -> web.Application:
    """`gantry serve`: the webhook receiver and task pages, and unless `workers` is off, the
    workers that run its tasks."""
    app = web_app(settings)
    app.cleanup_ctx.append(lambda app: serve_parts(app, store, workers))
    return app


async def resolve_handle(session: aiohttp.ClientSession, settings: Settings) -> str:
    """`BOT_HANDLE`, or the App's slug from `GET /app`."""
    if settings.bot_handle:
        return settings.bot_handle
    if not settings.has_app_credentials:
        raise SettingsError(["GANTRY_BOT_HANDLE: set it, or set the App's credentials"])
    try:
        app = await fetch_app(session, settings)
    except (aiohttp.ClientError, gidgethub.GitHubException, TimeoutError) as exc:
        raise SettingsError(
            [
                f"GitHub did not tell the App's handle (GET {settings.api_url}/app): "
                f"{type(exc).__name__}: {exc}; check GANTRY_GITHUB_API_URL and the App's "
                "credentials (`gantry doctor`), or set GANTRY_BOT_HANDLE to start without asking"
            ]
        ) from None
    return str(app["slug"])


def reset_cache_hook(
    settings: Settings, store: TaskStore, workers: Workers | None
) -> Callable[[str], Awaitable[str]]:
    """`@gantry reset-cache`: one process with SQLite drops its own cache; otherwise the
    request goes through the store to every worker (and this process's cache, if any)."""
    local = workers.cache if workers is not None else None

    async def reset(repo: str) -> str:
        if local is not None and not settings.database.is_postgres:
            return replies.cache_reset(repo, await local.drop_repo(repo))
        await store.request_cache_reset(repo)
        if local is not None:
            await local.drop_repo(repo)
        return replies.cache_reset_requested(repo, RESET_POLL_S)

    return reset


def no_cancel(task_id: int) -> bool:
    """No worker in this process: the task's stored state is all a cancel changes here."""
    return False


async def serve_parts(
    app: web.Application, store: TaskStore | None, with_workers: bool
) -> AsyncIterator[None]:
    """Open the store, the HTTP session, `/metrics`, the workers and the intake."""
    settings = app[SETTINGS]
    if settings.serving_problems():
        raise SettingsError(settings.serving_problems())
    store = store or await open_store(settings.database)
    metrics = app[METRICS]
    metrics.watch_tasks(store.state_counts)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        tokens = InstallationTokens(session, settings)
        background = Background()
        handle = await resolve_handle(session, settings)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(metrics_listener(metrics, settings.metrics_bind))
            queue = await stack.enter_async_context(task_wakeups(settings.database))
            workers: Workers | None = None
            if with_workers:
                workers = await stack.enter_async_context(
                    running_workers(settings, store, queue, tokens, handle, background, metrics)
                )
            intake = Intake(
                store=store,
                queue=queue,
                github=tokens.client,
                handle=handle,
                background=background,
                permissions=PermissionCache(),
                triggers=TriggerCache(settings=settings),
                on_cancel=workers.cancel if workers is not None else no_cancel,
                on_reset_cache=reset_cache_hook(settings, store, workers),
                settings=settings,
            )
            inbox = Inbox(
                store,
                lambda event: handle_delivery(intake, tokens, event),
                retry_delays(settings.inbox_retry_first, settings.inbox_retry_limit),
                metrics=metrics,
            )
            app[SERVICES] = Services(
                settings, store, queue, intake, background, tokens, inbox, workers
            )
            counts, _ = await store.state_counts()
            log.info("intake ready as @%s; %d task(s) queued", handle, counts.get("queued", 0))
            resumed = await inbox.resume()
            log.info("%d stored delivery(ies) resumed from the inbox", resumed)
            loops = [asyncio.create_task(recover_missed(session, settings, store))]
            if workers is None:  # its own copies of logs and patches; delivery records too
                pruning = prune_forever(settings.data_dir, deliveries=store.prune_deliveries)
                loops.append(asyncio.create_task(pruning))
            yield
            for loop in loops:
                loop.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.drain(), INBOX_SHUTDOWN_WAIT)
            await inbox.close()
        await background.drain()
    finally:
        await session.close()
        await store.close()


async def recover_missed(
    session: aiohttp.ClientSession, settings: Settings, store: TaskStore
) -> None:
    """Redeliver what was missed while down, at start-up and then periodically."""
    if not settings.has_app_credentials:
        return
    if settings.delivery_log_interval:
        await missed_deliveries.recover_periodically(session, settings, store)
        return
    try:
        await missed_deliveries.recover(session, settings, store)
    except missed_deliveries.ERRORS as exc:
        log.warning("could not read the App's delivery log: %s", exc)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """`gantry worker`: the worker runtime alone, on the shared store, until `stop` is set;
    then it drains (running tasks get DRAIN_TIMEOUT to end)."""
    store = await open_store(settings.database)
    metrics = Metrics()
    metrics.watch_tasks(store.state_counts)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        tokens, background = InstallationTokens(session, settings), Background()
        handle = await resolve_handle(session, settings)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(metrics_listener(metrics, settings.metrics_bind))
            queue = await stack.enter_async_context(task_wakeups(settings.database))
            await stack.enter_async_context(
                running_workers(
                    settings,
                    store,
                    queue,
                    tokens,
                    handle,
                    background,
                    metrics,
                    settings.drain_timeout,
                    ship_logs=True,
                )
            )
            log.info("worker ready as @%s on %s", handle, worker_name(settings))
            await stop.wait()
            log.info("draining: no new tasks; running ones get %.0f s", settings.drain_timeout)
        await background.drain()
    finally:
        await session.close()
        await store.close()


def worker_command() -> int:
    """`gantry worker` until SIGTERM or SIGINT, then drained; 2 when the settings are not valid."""
    try:
        settings = load_settings()
        if settings.serving_problems():
            raise SettingsError(settings.serving_problems())
    except SettingsError as exc:
        print("gantry worker: the settings are not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    asyncio.run(until_signalled(settings))
    return 0


async def until_signalled(settings: Settings) -> None:
    """Run the worker; SIGTERM or SIGINT starts its drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_worker(settings, stop)
