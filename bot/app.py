"""The aiohttp application: `POST /webhook`, `GET /healthz`, `GET /readyz`, and the signed
task pages (`/tasks/<id>`, its log stream, `/repos/<owner>/<name>/tasks`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass

from aiohttp import web
from gidgethub import routing, sansio

from bot import (
    assignments,
    config_check,
    installations,
    mentions,
    repo_page,
    review_auto,
    task_page,
    task_stream,
)
from bot.background import Background
from bot.body_budget import BodyBudget
from bot.inbox import Inbox
from bot.intake import Intake, Outcome
from bot.routing import Dispatch
from bot.tokens import InstallationTokens
from bot.webhook import (
    MAX_BODY_BYTES,
    WebhookRejectedError,
    check_headers,
    parse_payload,
    verify_signature,
)
from config.bad_requests import quiet_bad_requests
from config.settings import Settings
from gantry.metrics import METRICS, Metrics, refusal_outcome
from runner import task_listing
from runner.engine import EngineUnavailableError, docker_version
from runner.log_shipping import copy_log, copy_patch
from runner.queue import TaskQueue
from runner.store import InboxEntry, InboxState, TaskStore
from runner.task import Task
from runner.worker import Workers

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
BODIES = web.AppKey("bodies", BodyBudget)


def web_app(settings: Settings) -> web.Application:
    """The webhook receiver and the task pages; the command line adds the parts they use
    (`SERVICES`) in a `cleanup_ctx` of its own."""
    quiet_bad_requests()
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[BODIES] = BodyBudget()
    app.router.add_post("/webhook", app[METRICS].timed(webhook))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/tasks/{task_id:[0-9]+}", task_view)
    app.router.add_get("/tasks/{task_id:[0-9]+}/log", task_log_stream)
    app.router.add_get("/repos/{owner}/{name}/tasks", repo_tasks_view)
    app[STREAMS] = task_stream.Streams()
    app.on_shutdown.append(stop_streams)
    return app


def answer(http_status: int, **fields: object) -> web.Response:
    return web.json_response(fields, status=http_status)


def refusal(exc: WebhookRejectedError) -> web.Response:
    """The webhook's answer to a delivery refused at the edge."""
    response = answer(exc.status, error=exc.reason)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def counted(request: web.Request, outcome: str, response: web.Response) -> web.Response:
    """The webhook's answer, counted by its outcome."""
    request.app[METRICS].delivery_answered(outcome)
    return response


async def read_delivery(request: web.Request, secret: str) -> sansio.Event:
    """A verified delivery as an event."""
    return (await read_verified(request, secret))[0]


async def read_verified(request: web.Request, secret: str) -> tuple[sansio.Event, bytes]:
    """Headers, size, signature, then JSON: in that order, so nothing unsigned is parsed, and
    an unsigned body is read only within the server's budget for them."""
    headers = check_headers(request.headers, request.content_length)
    body = await read_body(request, request.app[BODIES], headers.length)
    verify_signature(secret, body, headers.signature)
    data = parse_payload(body)
    return sansio.Event(data, event=headers.event, delivery_id=headers.delivery_id), body


async def read_body(request: web.Request, budget: BodyBudget, length: int) -> bytes:
    """The request's body: at once when it came whole with the headers (as deliveries nearly
    always do; aiohttp's flow control bounds what it buffers per connection), else within
    the budget for unverified bodies and before its deadline."""
    try:
        if request.content.is_eof():
            return await request.read()
        with budget.reserved(length):
            async with asyncio.timeout(budget.read_seconds):
                return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise WebhookRejectedError(413, "payload too large") from None
    except TimeoutError:
        raise WebhookRejectedError(408, "body not received in time") from None


async def webhook(request: web.Request) -> web.Response:
    """Verify, deduplicate and store the delivery, then answer; it is handled after."""
    services = request.app[SERVICES]
    try:
        event, body = await read_verified(request, services.settings.webhook_secret)
    except WebhookRejectedError as exc:
        log.warning("delivery refused (%d): %s", exc.status, exc.reason)
        return counted(request, refusal_outcome(exc.status), refusal(exc))
    # Only verified deliveries count as load: a client trickling an unsigned body in never
    # holds the inbox back.
    load = services.inbox.load
    load.enter()
    try:
        return await take_delivery(request, services, event, body)
    finally:
        load.leave()


async def take_delivery(
    request: web.Request, services: Services, event: sansio.Event, body: bytes
) -> web.Response:
    """The webhook's answer to a verified delivery; one to handle goes to the inbox."""
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
    await copy_from_store(services, task.id)
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
        repo_link=task_page.repo_list_link(services.settings.webhook_secret, task.repo),
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
    await copy_log(services.store, task.id, path)
    given = request.headers.get("Last-Event-ID") or request.query.get("offset")
    follower = task_stream.LogFollower(
        path,
        task_stream.start_offset(given, task_stream.file_size(path)),
        lambda: copied_status(services, task.id),
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


async def copy_from_store(services: Services, task_id: int) -> None:
    """The log and patch of a task that another host ran, copied into this server's files."""
    data_dir = services.settings.data_dir
    await copy_log(services.store, task_id, task_page.log_path(data_dir, task_id))
    await copy_patch(services.store, task_id, task_page.patch_path(data_dir, task_id))


async def copied_status(services: Services, task_id: int) -> task_stream.Status:
    """The task's status, its log's new lines copied first (from a worker elsewhere)."""
    await copy_log(services.store, task_id, task_page.log_path(services.settings.data_dir, task_id))
    return await task_status(services.store, task_id)


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
    tasks = await services.store.repo_tasks(repo, task_listing.REPO_TASKS_LIMIT)
    body = repo_page.render(repo, tasks, secret, task_listing.REPO_TASKS_LIMIT)
    headers = task_page.security_headers(secrets.token_urlsafe(16))
    return web.Response(text=body, content_type="text/html", headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return answer(200, status="ok")


async def readyz(request: web.Request) -> web.Response:
    """Ready: the store answers, and the Docker engine too where workers run."""
    services = request.app[SERVICES]
    problems: dict[str, str] = {}
    try:
        await services.store.ping()
    except Exception as exc:  # any store failure means not ready; say which
        problems["store"] = f"{type(exc).__name__}: {exc}"
    if services.workers is not None:  # a server without workers runs no container
        try:
            await asyncio.to_thread(docker_version, 5)
        except EngineUnavailableError as exc:
            problems["docker"] = str(exc)
    if problems:
        return answer(503, status="not ready", problems=problems)
    return answer(200, status="ready")
