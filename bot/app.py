"""The aiohttp application: `POST /webhook`, `GET /healthz`, `GET /readyz`, and the signed
task pages (`/tasks/<id>`, its log stream, `/repos/<owner>/<name>/tasks`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from gidgethub import routing, sansio

from bot import (
    assignments,
    config_check,
    installations,
    mentions,
    missed_deliveries,
    repo_page,
    review_auto,
    task_page,
    task_stream,
)
from bot.background import Background
from bot.github_app import fetch_app
from bot.inbox import Inbox, retry_delays
from bot.intake import Intake, Outcome
from bot.permissions import PermissionCache
from bot.repo_triggers import TriggerCache
from bot.routing import Dispatch
from bot.tokens import InstallationTokens
from bot.webhook import (
    MAX_BODY_BYTES,
    WebhookRejectedError,
    check_headers,
    parse_payload,
    verify_signature,
)
from bot.workers import Workers, running_workers
from config.errors import SettingsError
from config.settings import Settings
from gantry.metrics import METRICS, Metrics, refusal_outcome, serving
from runner import task_listing
from runner.engine import EngineUnavailableError, docker_version
from runner.queue import MemoryQueue, TaskQueue, requeue_pending
from runner.store import InboxEntry, InboxState, SQLiteTaskStore, Task, TaskStore

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
PENDING = InboxState.PENDING

ROUTER = routing.Router(
    mentions.router,
    assignments.router,
    installations.router,
    config_check.router,
    review_auto.router,
)
# At shutdown, deliveries still being handled get this long; the rest stay pending in the
# store and are handled at the next start.
INBOX_SHUTDOWN_WAIT = 5.0


@dataclass
class Services:
    """Everything the handlers need, opened in `cleanup_ctx` and closed after."""

    settings: Settings
    store: TaskStore
    queue: TaskQueue
    intake: Intake
    background: Background
    tokens: InstallationTokens
    inbox: Inbox
    workers: Workers | None = None


SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
STREAMS = web.AppKey("streams", task_stream.Streams)


def create_app(
    settings: Settings, *, store: TaskStore | None = None, workers: bool = True
) -> web.Application:
    """The webhook receiver (and, unless `workers` is off, the workers that run its tasks)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(lambda app: services_ctx(app, store, workers))
    app.router.add_post("/webhook", app[METRICS].timed(webhook))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/tasks/{task_id:[0-9]+}", task_view)
    app.router.add_get("/tasks/{task_id:[0-9]+}/log", task_log_stream)
    app.router.add_get("/repos/{owner}/{name}/tasks", repo_tasks_view)
    app[STREAMS] = task_stream.Streams()
    app.on_shutdown.append(stop_streams)
    return app


async def open_store(settings: Settings) -> TaskStore:
    """The configured store; SQLite is the only one this version has."""
    path = settings.sqlite_path
    if path is None:
        raise SettingsError(["GANTRY_DATABASE_URL: only sqlite:/// URLs are supported yet"])
    return await SQLiteTaskStore.open(path)


async def resolve_handle(session: aiohttp.ClientSession, settings: Settings) -> str:
    """`BOT_HANDLE`, or the App's slug from `GET /app`."""
    if settings.bot_handle:
        return settings.bot_handle
    if not settings.has_app_credentials:
        raise SettingsError(["GANTRY_BOT_HANDLE: set it, or set the App's credentials"])
    app = await fetch_app(session, settings)
    return str(app["slug"])


async def services_ctx(
    app: web.Application, store: TaskStore | None, with_workers: bool
) -> AsyncIterator[None]:
    """Open the store, the HTTP session, the intake and the workers; requeue what was queued."""
    settings = app[SETTINGS]
    if settings.serving_problems():
        raise SettingsError(settings.serving_problems())
    store = store or await open_store(settings)
    metrics = app[METRICS]
    metrics.watch_tasks(store.state_counts)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        tokens = InstallationTokens(session, settings)
        queue, background = MemoryQueue(), Background()
        intake = Intake(
            store=store,
            queue=queue,
            github=tokens.client,
            handle=await resolve_handle(session, settings),
            background=background,
            permissions=PermissionCache(),
            triggers=TriggerCache(settings=settings),
            settings=settings,
        )
        requeued = await requeue_pending(store, queue)
        log.info("intake ready as @%s; %d queued task(s) requeued", intake.handle, requeued)
        inbox = Inbox(
            store,
            lambda event: handle_delivery(intake, tokens, event),
            retry_delays(settings.inbox_retry_first, settings.inbox_retry_limit),
            metrics=metrics,
        )
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(serving(metrics, settings.metrics_bind))
            workers = None
            if with_workers:
                workers = await stack.enter_async_context(
                    running_workers(
                        settings, store, queue, tokens, intake.handle, background, metrics
                    )
                )
                intake.on_cancel = workers.cancel
                if workers.cache is not None:
                    intake.on_reset_cache = workers.cache.drop_repo
            app[SERVICES] = Services(
                settings, store, queue, intake, background, tokens, inbox, workers
            )
            resumed = await inbox.resume()
            log.info("%d stored delivery(ies) resumed from the inbox", resumed)
            recovery = asyncio.create_task(recover_missed(session, settings, store))
            yield
            recovery.cancel()
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


def answer(http_status: int, **fields: object) -> web.Response:
    return web.json_response(fields, status=http_status)


def counted(request: web.Request, outcome: str, response: web.Response) -> web.Response:
    """The webhook's answer, counted by its outcome."""
    request.app[METRICS].delivery_answered(outcome)
    return response


async def read_delivery(request: web.Request, secret: str) -> sansio.Event:
    """A verified delivery as an event."""
    return (await read_verified(request, secret))[0]


async def read_verified(request: web.Request, secret: str) -> tuple[sansio.Event, bytes]:
    """Headers, size, signature, then JSON: in that order, so nothing unsigned is parsed."""
    headers = check_headers(request.headers, request.content_length)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise WebhookRejectedError(413, "payload too large") from None
    verify_signature(secret, body, headers.signature)
    data = parse_payload(body)
    return sansio.Event(data, event=headers.event, delivery_id=headers.delivery_id), body


async def webhook(request: web.Request) -> web.Response:
    """Verify, deduplicate and store the delivery, then answer; it is handled after."""
    services = request.app[SERVICES]
    load = services.inbox.load
    load.enter()
    try:
        return await take_delivery(request, services)
    finally:
        load.leave()


async def take_delivery(request: web.Request, services: Services) -> web.Response:
    """The webhook's answer to one request; a delivery to handle goes to the inbox."""
    secret = services.settings.webhook_secret
    try:
        event, body = await read_verified(request, secret)
    except WebhookRejectedError as exc:
        log.warning("delivery refused (%d): %s", exc.status, exc.reason)
        return counted(request, refusal_outcome(exc.status), answer(exc.status, error=exc.reason))
    if event.event == "ping":
        return counted(request, "pong", answer(200, outcome="pong"))
    if not ROUTER.fetch(event):
        return counted(request, Outcome.IGNORED, answer(202, outcome=Outcome.IGNORED))
    payload = stored_payload(event, body)
    if not await services.store.accept_delivery(event.delivery_id, event.event, payload):
        return counted(request, "duplicate", answer(200, outcome="duplicate"))
    services.inbox.submit(InboxEntry(event.delivery_id, event.event, payload, PENDING, 0, None, ""))
    return counted(request, ACCEPTED, answer(200, outcome=ACCEPTED))


def stored_payload(event: sansio.Event, body: bytes) -> str:
    """The payload as stored text: the body itself when it is UTF-8 (it nearly always is)."""
    try:
        return body.decode()
    except UnicodeDecodeError:
        return json.dumps(event.data)


async def handle_delivery(
    intake: Intake, tokens: InstallationTokens, event: sansio.Event
) -> list[Outcome]:
    """Run the handlers of a stored delivery; what it led to."""
    ctx = Dispatch(intake, event.delivery_id, tokens)
    await ROUTER.dispatch(event, ctx)
    return ctx.outcomes


async def signed_task(request: web.Request) -> Task:
    """The task of a task-page request whose signature holds; 404 for anything else."""
    services = request.app[SERVICES]
    task_id = int(request.match_info["task_id"])
    if not task_page.valid(services.settings.webhook_secret, task_id, request.query.get("sig", "")):
        raise web.HTTPNotFound()
    task = await services.store.get(task_id)
    if task is None:
        raise web.HTTPNotFound()
    return task


async def task_view(request: web.Request) -> web.Response:
    """A task's page, for whoever holds its signed link; 404 for anyone else."""
    services = request.app[SERVICES]
    task = await signed_task(request)
    data_dir = services.settings.data_dir
    snapshot, patch = await asyncio.to_thread(
        lambda: (
            task_page.read_log_snapshot(task_page.log_path(data_dir, task.id)),
            task_page.read_tail(task_page.patch_path(data_dir, task.id)),
        )
    )
    phases = await services.store.phases(task.id)
    usage = await services.store.usage(task.id)
    nonce = secrets.token_urlsafe(16)
    stream = task_page.stream_path(task.id, request.query["sig"], snapshot.end)
    body = task_page.render(
        task, phases, snapshot.text, patch, json.loads(usage) if usage else None,
        stream=stream, nonce=nonce,
    )  # fmt: skip
    headers = task_page.security_headers(nonce)
    return web.Response(text=body, content_type="text/html", headers=headers)


async def task_log_stream(request: web.Request) -> web.StreamResponse:
    """The task's log as server-sent events, from `offset` (or `Last-Event-ID`) until the task
    has ended and its log is drained; a client that leaves just ends it."""
    services, streams = request.app[SERVICES], request.app[STREAMS]
    task = await signed_task(request)
    if not streams.admit():
        raise web.HTTPServiceUnavailable(text="too many open log streams; try again shortly")
    try:
        return await follow_log(request, services, streams, task)
    finally:
        streams.leave()


async def follow_log(
    request: web.Request, services: Services, streams: task_stream.Streams, task: Task
) -> web.StreamResponse:
    """Send the log's events until the follower ends, the client leaves or the server stops."""
    path = task_page.log_path(services.settings.data_dir, task.id)
    given = request.headers.get("Last-Event-ID") or request.query.get("offset")
    follower = task_stream.LogFollower(
        path,
        task_stream.start_offset(given, task_stream.file_size(path)),
        lambda: task_status(services.store, task.id),
        lambda: streams.stopping or request.transport is None or request.transport.is_closing(),
    )
    response = web.StreamResponse(headers=task_stream.HEADERS)
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        async with contextlib.aclosing(follower.events()) as frames:
            async for frame in frames:
                await response.write(frame)
        await response.write_eof()
    return response


async def stop_streams(app: web.Application) -> None:
    """End the open log streams, so that shutting down does not wait for them."""
    app[STREAMS].stopping = True


async def task_status(store: TaskStore, task_id: int) -> task_stream.Status:
    """The task's state and phases, for its stream."""
    task = await store.get(task_id)
    phases = await store.phases(task_id)
    return task_stream.Status(task.state if task else None, tuple(phases))


async def repo_tasks_view(request: web.Request) -> web.Response:
    """A repository's task list, for whoever holds its signed link; 404 for anyone else."""
    services = request.app[SERVICES]
    repo = f"{request.match_info['owner']}/{request.match_info['name']}"
    secret = services.settings.webhook_secret
    if not task_page.valid_repo(secret, repo, request.query.get("sig", "")):
        raise web.HTTPNotFound()
    database = services.settings.sqlite_path
    tasks = [] if database is None else await task_listing.list_repo_tasks(database, repo)
    body = repo_page.render(repo, tasks, secret, task_listing.REPO_TASKS_LIMIT)
    headers = task_page.security_headers(secrets.token_urlsafe(16))
    return web.Response(text=body, content_type="text/html", headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return answer(200, status="ok")


async def readyz(request: web.Request) -> web.Response:
    """Ready: the store and the Docker engine answer."""
    services = request.app[SERVICES]
    problems: dict[str, str] = {}
    try:
        await services.store.ping()
    except Exception as exc:  # any store failure means not ready; say which
        problems["store"] = f"{type(exc).__name__}: {exc}"
    try:
        await asyncio.to_thread(docker_version, 5)
    except EngineUnavailableError as exc:
        problems["docker"] = str(exc)
    if problems:
        return answer(503, status="not ready", problems=problems)
    return answer(200, status="ready")
