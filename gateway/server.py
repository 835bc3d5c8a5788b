"""The model gateway's aiohttp shell: check the token, spend the budget, forward, stream back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from config.bad_requests import quiet_bad_requests
from config.errors import GantryError
from config.repo_config import NetworkMode
from gantry.metrics import Metrics
from gateway.connections import Guards, HeadLimits
from gateway.errors import NO_RETRY, error_body, error_message
from gateway.ledger import Budget, Exchange, Pacing, TaskLedger, TaskUsage
from gateway.routes import (
    PROVIDERS,
    Provider,
    Providers,
    Refusal,
    Route,
    client_headers,
    client_token,
    provider_of,
    route,
    upstream_headers,
)
from gateway.tokens import TokenRegistry
from gateway.transcript import (
    JSON_CAP,
    Answer,
    Inspected,
    ReachingRequestError,
    StreamReader,
    UninspectableRequestError,
    UnreadableRequestError,
    inspect_request,
    read_json,
    redact,
)

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
ERROR_BODY_CAP = 1024 * 1024
SSE = "text/event-stream"
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
# Upstream statuses that mean the provider failed, not that the agent asked badly.
PROVIDER_FAILURES = frozenset({401, 402, 403, 408, 429})
UNKNOWN_TOKEN = "Gantry token unknown or expired: this task's agent phase has ended"  # noqa: S105
NO_KEY = "Gantry has no {provider} API key (set GANTRY_{upper}_API_KEY)"
WEBSOCKET = "Gantry's model gateway speaks HTTP only; use the HTTP (SSE) transport"
TOO_LARGE = f"request body over {MAX_BODY // 1024 // 1024} MiB"
BUSY = "Gantry: {count} requests of this task are in flight already; retry when one has ended"
SLOW_BODY = "Gantry: the request body did not arrive within {seconds:.0f} s"
UNREADABLE = "Gantry could not read the request body as JSON: {reason}"
REACHING = (
    "Gantry's gateway refuses {reason}; run MCP servers, fetches and commands in the agent "
    "instead, where the task's network policy holds"
)
UNINSPECTABLE = "Gantry's gateway refuses this request: {reason}"
GONE = "the agent closed the connection before its request body arrived"
# An idle keep-alive connection is closed after this; the CLIs reconnect when they need to.
KEEPALIVE_SECONDS = 75.0
# How long the rest of a refused request's body is read and dropped before the connection
# closes (aiohttp's default is 10 s).
LINGER_SECONDS = 2.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UnknownTaskError(GantryError):
    """No open task has this id."""


class Gate:
    """Where one task's requests wait for a slot: woken when one of them ends, and for good
    when the task closes (then they end at once, not when their wait runs out)."""

    def __init__(self) -> None:
        self.closed = False
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Let every waiter look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """End every wait, now and later."""
        self.closed = True
        self.wake()

    async def wait_for(self, ready: Callable[[], bool]) -> bool:
        """Wait until `ready()`; False if the task closed first."""
        while not self.closed and not ready():
            await self._changed.wait()
        return not self.closed


class ModelGateway:
    """One in-process gateway for every task: per-task tokens, budgets and usage."""

    def __init__(
        self,
        providers: Providers,
        ceilings: Budget,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: aiohttp.ClientTimeout = UPSTREAM_TIMEOUT,
        metrics: Metrics | None = None,
        limits: HeadLimits | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.providers = providers
        self.metrics = metrics or Metrics()
        self.ceilings = ceilings
        self.limits = limits or HeadLimits()
        self.pacing = pacing or Pacing()
        self._clock = clock
        self._timeout = timeout
        self._tasks: dict[str, TaskLedger] = {}
        self._gates: dict[str, Gate] = {}
        self._registry = TokenRegistry()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._guards = Guards(self.limits)

    # -- tasks -----------------------------------------------------------------------------

    def open_task(
        self,
        task_id: str,
        budget: Budget,
        keys: Mapping[Provider, str] | None = None,
        secrets: Iterable[str] = (),
        network: NetworkMode = "off",
    ) -> str:
        """Start counting for a task; the token its agent uses. `keys` override the server's;
        `secrets` (the task's, as its log masks them) are masked in its session log too;
        `network` is the agent's `network.agent`, which decides the provider-side tools its
        requests may use (`gateway.reach`)."""
        if task_id in self._tasks:
            raise GantryError(f"task {task_id} already has an open gateway session")
        chosen = {p: (keys or {}).get(p) or self.providers[p].key for p in PROVIDERS}
        self._tasks[task_id] = TaskLedger(
            task_id=task_id,
            budget=budget.capped(self.ceilings),
            opened_at=self._clock(),
            keys={p: key for p, key in chosen.items() if key},
            secrets=tuple(value for value in secrets if value),
            network=network,
        )
        self._gates[task_id] = Gate()
        return self._registry.issue(task_id)

    def close_task(self, task_id: str) -> TaskUsage:
        """Revoke the task's token at once, end its requests' waits for a slot, and return its
        final usage."""
        self._registry.revoke(task_id)
        ledger = self._tasks.pop(task_id, None)
        gate = self._gates.pop(task_id, None)
        if gate is not None:
            gate.close()
        if ledger is None:
            raise UnknownTaskError(task_id)
        return ledger.snapshot()

    def usage(self, task_id: str) -> TaskUsage:
        """An open task's usage so far."""
        ledger = self._tasks.get(task_id)
        if ledger is None:
            raise UnknownTaskError(task_id)
        return ledger.snapshot()

    # -- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The gateway as an aiohttp app (its upstream session lives as long as the app)."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._mark_busy])
        app.router.add_get("/healthz", _healthz)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.cleanup_ctx.append(self._upstream_session)
        return app

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0 picks a free port); the bound port. Every connection goes
        through the guards (`gateway.connections`) before aiohttp sees its bytes."""
        quiet_bad_requests()
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=KEEPALIVE_SECONDS,
            lingering_time=LINGER_SECONDS,
            **self.limits.server_args(),
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._guards.factory(server), host, port)
        return int(self._listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop serving and close the upstream session."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _mark_busy(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tell the connection's guard that its head arrived, and when the answer is out."""
        guard = self._guards.of(request.transport)
        if guard is not None:
            guard.request_started()
        try:
            return await handler(request)
        finally:
            if guard is not None:
                guard.request_ended()

    async def _upstream_session(self, _app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector, timeout=self._timeout) as session:
            self._session = session
            yield
            self._session = None

    # -- one request -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request, counted by provider and status."""
        response = await self._answer(request)
        self.metrics.gateway_request(provider_of(request.rel_url.raw_path), response.status)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return refuse(Refusal(provider_of(raw_path), 426, "websocket_unsupported", WEBSOCKET))
        decision = route(request.method, raw_path, request.rel_url.raw_query_string)
        if isinstance(decision, Refusal):
            return refuse(decision)
        token = client_token(decision.provider, request.headers)
        task_id = self._registry.task_of(token) if token else None
        ledger = self._tasks.get(task_id) if task_id else None
        if ledger is None:
            return refuse(Refusal(decision.provider, 401, "invalid_api_key", UNKNOWN_TOKEN))
        return await self._for_task(request, decision, ledger)

    async def _for_task(
        self, request: web.Request, target: Route, ledger: TaskLedger
    ) -> web.StreamResponse:
        provider = target.provider
        key = ledger.keys.get(provider)
        if key is None:
            message = NO_KEY.format(provider=provider, upper=provider.upper())
            ledger.fail(message, provider=True)
            return refuse(Refusal(provider, 401, "gantry_no_provider_key", message))
        if (request.content_length or 0) > MAX_BODY:
            return refuse(Refusal(provider, 413, "request_too_large", TOO_LARGE))
        gate = self._gates[ledger.task_id]
        guess = await self._take_slot(provider, ledger, gate, request.content_length)
        if isinstance(guess, Refusal):
            return refuse(guess, retry=guess.status == 429)
        try:
            return await self._in_slot(request, target, ledger, key)
        finally:
            ledger.end(guess)
            gate.wake()

    async def _take_slot(
        self, provider: Provider, ledger: TaskLedger, gate: Gate, body_size: int | None
    ) -> int | Refusal:
        """Wait (a while) until the task may start one more request, and take the slot: its
        token reservation, or the answer when no slot came free in time or the task closed."""
        try:
            async with asyncio.timeout(self.pacing.queue_seconds):
                still_open = await gate.wait_for(lambda: ledger.may_start(self.pacing.in_flight))
        except TimeoutError:
            busy = BUSY.format(count=ledger.in_flight)
            return Refusal(provider, 429, "gantry_too_many_parallel", busy)
        if not still_open:
            return Refusal(provider, 401, "invalid_api_key", UNKNOWN_TOKEN)
        return ledger.start(body_size)

    async def _in_slot(
        self, request: web.Request, target: Route, ledger: TaskLedger, key: str
    ) -> web.StreamResponse:
        """Spend, read the body, forward: the budget is checked before the body is read."""
        provider = target.provider
        spent = ledger.spend(self._clock())
        if spent is not None:
            log.info("gateway: task %s refused: %s", ledger.task_id, spent)
            return refuse(Refusal(provider, 403, "gantry_budget_exhausted", spent))
        body = await self._read_body(request, ledger, provider)
        if isinstance(body, web.Response):
            return body
        inspected = _inspect(body, ledger, provider)
        if isinstance(inspected, Refusal):
            return refuse(inspected)
        if inspected.dropped:
            log.debug(
                "gateway: task %s: dropped %s (network.agent %s)",
                ledger.task_id, ", ".join(inspected.dropped), ledger.network,
            )  # fmt: skip
        ledger.saw_model(inspected.model)
        call = Call(request, target, ledger, inspected.model, inspected.digest, self.metrics)
        return await self._forward(call, key, inspected.body)

    async def _read_body(
        self, request: web.Request, ledger: TaskLedger, provider: Provider
    ) -> bytes | web.Response:
        """The whole body, or the answer to a body too large, too slow or abandoned."""
        seconds = self.pacing.body_seconds
        try:
            async with asyncio.timeout(seconds):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return refuse(Refusal(provider, 413, "request_too_large", TOO_LARGE))
        except TimeoutError:
            message = SLOW_BODY.format(seconds=seconds)
            ledger.fail(message, provider=False)
            return refuse(Refusal(provider, 408, "gantry_slow_body", message))
        except ConnectionError:
            log.info("gateway: task %s: %s", ledger.task_id, GONE)
            return refuse(Refusal(provider, 400, "gantry_client_gone", GONE))

    async def _forward(self, call: Call, key: str, body: bytes) -> web.StreamResponse:
        assert self._session is not None, "the gateway app is not running"
        provider, url = call.route.provider, self.providers[call.route.provider].url(call.route)
        headers = upstream_headers(provider, call.request.headers.items(), key)
        try:
            async with self._session.request(
                call.request.method, url, data=body or None, headers=headers, allow_redirects=False
            ) as upstream:
                if upstream.status >= 400:
                    return await _upstream_error(call, upstream)
                return await _relay(call, upstream)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            message = f"Gantry could not reach the {provider} API ({reason})"
            call.ledger.fail(message, provider=True)
            call.log(502, Answer())
            return refuse(Refusal(provider, 502, "upstream_unreachable", message), retry=True)


def _inspect(body: bytes, ledger: TaskLedger, provider: Provider) -> Inspected | Refusal:
    """The request as it may go upstream under the task's policy, or the gateway's answer."""
    try:
        return inspect_request(body, ledger.network, ledger.masked)
    except UnreadableRequestError as exc:
        message = UNREADABLE.format(reason=exc)
        return Refusal(provider, 400, "gantry_unreadable_body", message)
    except ReachingRequestError as exc:
        message = REACHING.format(reason=exc)
        ledger.fail(message, provider=False)
        return Refusal(provider, 400, "gantry_provider_reach", message)
    except UninspectableRequestError as exc:
        message = UNINSPECTABLE.format(reason=exc)
        ledger.fail(message, provider=False)
        return Refusal(provider, 413, "request_too_large", message)


class Call:
    """One forwarded request: who made it, where it goes, and how it is logged."""

    def __init__(
        self,
        request: web.Request,
        route: Route,
        ledger: TaskLedger,
        model: str | None,
        digest: str,
        metrics: Metrics,
    ) -> None:
        self.request, self.route, self.ledger = request, route, ledger
        self.model, self.digest, self.metrics = model, digest, metrics

    def log(self, status: int, answer: Answer) -> None:
        """Count the answer's tokens and log the exchange, redacted."""
        keys = self.ledger.masked
        exchange = Exchange(
            provider=self.route.provider,
            path=self.route.path,
            model=self.model,
            status=status,
            request=self.digest,
            answer=redact(answer.rendered_text(), keys),
            tool_calls=tuple(redact(call, keys) for call in answer.tool_calls()),
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
        )
        self.ledger.record(exchange, answer)
        self.metrics.gateway_usage(self.route.provider, answer.input_tokens, answer.output_tokens)
        log.info(
            "gateway: task %s %s %s -> %d", self.ledger.task_id, self.route.provider,
            self.route.path, status,
        )  # fmt: skip


async def _relay(call: Call, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Write each chunk to the agent as it arrives, reading usage on the side."""
    response = web.StreamResponse(
        status=upstream.status, headers=CIMultiDict(client_headers(upstream.headers.items()))
    )
    await response.prepare(call.request)
    stream = StreamReader() if upstream.content_type == SSE else None
    body = bytearray()
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            if stream is not None:
                stream.feed(chunk)
            elif len(body) + len(chunk) <= JSON_CAP:
                body += chunk
        await response.write_eof()
    except (aiohttp.ClientError, TimeoutError) as exc:
        call.ledger.fail(f"the {call.route.provider} stream broke: {exc}", provider=True)
    except ConnectionResetError:
        call.ledger.fail("the agent closed the connection mid-answer", provider=False)
    finally:
        answer = stream.answer if stream else read_json(call.route.provider, bytes(body))
        call.log(upstream.status, answer)
    return response


async def _upstream_error(call: Call, upstream: aiohttp.ClientResponse) -> web.Response:
    """Pass an upstream error through (redacted), synthesizing one if it is not provider-shaped."""
    provider, status = call.route.provider, upstream.status
    raw = bytearray()
    async for chunk in upstream.content.iter_any():
        raw += chunk[: ERROR_BODY_CAP - len(raw)]
        if len(raw) >= ERROR_BODY_CAP:
            break
    keys = call.ledger.masked
    text = redact(bytes(raw).decode("utf-8", "replace"), keys)
    message = error_message(text.encode())
    summary = f"the {provider} API answered {status}: {message or text[:300] or upstream.reason}"
    call.ledger.fail(summary, provider=status in PROVIDER_FAILURES or status >= 500)
    call.log(status, Answer())
    synthesized = error_body(provider, status, "upstream_error", summary)
    body = text.encode() if message is not None else synthesized
    headers = CIMultiDict(client_headers(upstream.headers.items()))
    headers["Content-Type"] = "application/json"
    return web.Response(status=status, body=body, headers=headers)


def refuse(refusal: Refusal, *, retry: bool = False) -> web.Response:
    """The gateway's own error answer, in the provider's shape; not retryable unless `retry`."""
    body = error_body(refusal.provider, refusal.status, refusal.code, refusal.message)
    headers = {} if retry else dict(NO_RETRY)
    return web.Response(
        status=refusal.status, body=body, content_type="application/json", headers=headers
    )


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")
