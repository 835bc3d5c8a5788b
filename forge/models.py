"""`ModelStandIn`: an OpenAI Responses API and Anthropic Messages API stand-in that drives the
real agent CLIs through a scripted conversation and records every request it receives.

`python -m forge.models --port 8788 --script edit --path NOTES.md --content 'hi'` serves one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from forge import model_wire as wire
from forge.model_script import Api, Reply, Script, ScriptKind, decide

DEFAULT_PORT = 8788
OPENAI_PATHS = ("/v1/responses", "/openai/v1/responses")
ANTHROPIC_PATHS = ("/v1/messages", "/anthropic/v1/messages")
RECEIVED_PATH = "/_stand_in/received"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Received:
    """One request as it arrived, the status it got and the usage its answer reported."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any
    status: int
    reply: Reply | None = None
    usage: wire.Usage | None = None

    @property
    def api_key(self) -> str | None:
        """The key it presented: `x-api-key`, else a bearer token."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass
class Failures:
    """Answer the next `count` model requests with `status` instead."""

    status: int = 500
    count: int = 0


@dataclass
class ModelState:
    """The script, the knobs and the log, shared by the handlers."""

    script: Script
    expected_key: str | None
    failures: Failures = field(default_factory=Failures)
    event_delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


STATE_KEY = web.AppKey("model_state", ModelState)


def api_of(path: str) -> Api | None:
    """Which provider API a path belongs to (None: not a model route)."""
    if path in OPENAI_PATHS:
        return "openai"
    if path in ANTHROPIC_PATHS:
        return "anthropic"
    return None


def refusal(state: ModelState, received_key: str | None) -> tuple[int, str] | None:
    """The status and message to answer instead of the script, if any (consumes a failure)."""
    if state.expected_key is not None and received_key != state.expected_key:
        return 401, "Invalid API key (model stand-in)"
    if state.failures.count > 0:
        state.failures.count -= 1
        return state.failures.status, f"Scripted failure {state.failures.status} (model stand-in)"
    return None


async def handle(request: web.Request) -> web.StreamResponse:
    """Every request: record it, then answer a model route by the script, anything else 404."""
    state = request.app[STATE_KEY]
    if request.path == RECEIVED_PATH:
        return web.json_response([record_json(r) for r in state.received])
    body = await _json_body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    base = Received(request.method, request.path, request.query_string, headers, body, 404)
    api = api_of(request.path) if request.method == "POST" else None
    if api is None:
        state.received.append(base)
        return web.json_response({"error": {"message": "not found"}}, status=404)
    refused = refusal(state, base.api_key)
    if refused is not None:
        status, message = refused
        state.received.append(_replace(base, status=status))
        return web.json_response(wire.error_body(api, status, message), status=status)
    try:
        reply = decide(api, body if isinstance(body, dict) else {}, state.script)
    except ValueError as exc:
        # The script cannot go on with what the CLI offered: say so in the provider's shape.
        state.received.append(_replace(base, status=500))
        return web.json_response(wire.error_body(api, 500, f"model stand-in: {exc}"), status=500)
    usage = wire.estimate_usage(body, reply)
    state.received.append(_replace(base, status=200, reply=reply, usage=usage))
    return await answer(request, state, api, body, reply, usage)


def record_json(received: Received) -> dict[str, Any]:
    """A record as JSON (for `GET /_stand_in/received` across processes)."""
    usage = received.usage
    return {
        "method": received.method,
        "path": received.path,
        "query": received.query,
        "headers": dict(received.headers),
        "body": received.body,
        "status": received.status,
        "reply": None if received.reply is None else type(received.reply).__name__,
        "usage": None if usage is None else [usage.input_tokens, usage.output_tokens],
    }


def _replace(received: Received, **changes: Any) -> Received:
    """A copy of a record with some fields changed."""
    return Received(**(received.__dict__ | changes))


async def _json_body(request: web.Request) -> Any:
    """The JSON body, or the raw text when it is not JSON (None when empty)."""
    text = await request.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def answer(
    request: web.Request,
    state: ModelState,
    api: Api,
    body: Any,
    reply: Reply,
    usage: wire.Usage,
) -> web.StreamResponse:
    """The reply, streamed as SSE when the request asked for it, else one JSON body."""
    n = next(state.ids)
    model = str(body.get("model", "stand-in")) if isinstance(body, dict) else "stand-in"
    streaming = isinstance(body, dict) and bool(body.get("stream"))
    if api == "openai":
        if not streaming:
            item = wire.openai_item(reply, f"item_{n}", f"call_{n}")
            return web.json_response(wire.openai_response(f"resp_{n}", model, item, usage))
        events = wire.openai_events(reply, f"resp_{n}", f"item_{n}", f"call_{n}", model, usage)
    else:
        if not streaming:
            message = wire.anthropic_message(f"msg_{n}", model, reply, f"toolu_{n}", usage)
            return web.json_response(message)
        events = wire.anthropic_events(reply, f"msg_{n}", f"toolu_{n}", model, usage)
    return await stream(request, events, state.event_delay)


async def stream(
    request: web.Request, events: list[wire.SseEvent], delay: float
) -> web.StreamResponse:
    """Write SSE frames one by one (after `delay` seconds each), unbuffered."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    for event in events:
        if delay:
            await asyncio.sleep(delay)
        await response.write(wire.sse_bytes(event))
    await response.write_eof()
    return response


def create_app(state: ModelState) -> web.Application:
    """The aiohttp app: every path goes through `handle`."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[STATE_KEY] = state
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class ModelStandIn:
    """A running model stand-in: the script, failure knobs, and what it received."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        expected_key: str | None = None,
        event_delay: float = 0.0,
    ) -> None:
        self.state = ModelState(script or Script(), expected_key, event_delay=event_delay)
        self.app = create_app(self.state)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (0 picks a free port; 0.0.0.0 for containers)."""
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.create_server((host, port))
        await web.SockSite(self._runner, sock).start()
        self.host, self.port = host, sock.getsockname()[1]

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ModelStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, host: str | None = None) -> str:
        """The root URL, as seen from `host` (default: the address it listens on)."""
        return f"http://{host or self.host}:{self.port}"

    @property
    def script(self) -> Script:
        """What the model does."""
        return self.state.script

    @script.setter
    def script(self, script: Script) -> None:
        self.state.script = script

    @property
    def expected_key(self) -> str | None:
        """The key every model request must present (None: any)."""
        return self.state.expected_key

    @expected_key.setter
    def expected_key(self, key: str | None) -> None:
        self.state.expected_key = key

    def fail_with(self, status: int, count: int = 1) -> None:
        """Answer the next `count` model requests with `status` (429, 500, …), provider-shaped."""
        self.state.failures = Failures(status, count)

    @property
    def received(self) -> list[Received]:
        """Every request received, in order (model routes and anything else)."""
        return self.state.received

    def model_requests(self, api: Api | None = None) -> list[Received]:
        """The requests to the model routes (of one API when given)."""
        return [
            r
            for r in self.state.received
            if (found := api_of(r.path)) is not None
            and r.method == "POST"
            and (api is None or found == api)
        ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m forge.models", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--script", choices=["edit", "runaway", "text"], default="edit")
    parser.add_argument("--path", default=Script.path)
    parser.add_argument("--content", default=Script.content)
    parser.add_argument("--answer", default=Script.answer)
    parser.add_argument("--expected-key", default=None)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Serve until interrupted, printing each model request as it arrives."""
    kind: ScriptKind = args.script
    script = Script(kind, args.path, args.content, args.answer)
    stand_in = ModelStandIn(script, expected_key=args.expected_key)
    await stand_in.start(args.host, args.port)
    print(f"model stand-in: {stand_in.url()} (script {kind}, file {args.path})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await stand_in.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m forge.models`."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
