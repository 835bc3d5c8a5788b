"""A recording fake upstream for both providers, and a gateway in front of it on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import Budget, ModelGateway, Providers, Upstream

OPENAI_KEY = "sk-real-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-real-anthropic-0123456789"
CEILINGS = Budget(requests=1000, tokens=10**9, seconds=3600)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request the fake upstream received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


def sse(*events: dict[str, Any]) -> bytes:
    """Events as an SSE body, `event:` lines included as the providers send them."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


RESPONSES_STREAM = sse(
    {"type": "response.created", "response": {"id": "r1"}},
    {"type": "response.output_text.delta", "delta": "Hello "},
    {"type": "response.output_text.delta", "delta": "world"},
    {
        "type": "response.output_item.done",
        "item": {
            "type": "function_call",
            "call_id": "c1",
            "name": "exec_command",
            "arguments": '{"cmd": "ls"}',
        },
    },
    {
        "type": "response.completed",
        "response": {
            "id": "r1",
            "usage": {"input_tokens": 120, "output_tokens": 7, "total_tokens": 127},
        },
    },
)
MESSAGES_STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "m1",
            "usage": {"input_tokens": 50, "cache_read_input_tokens": 30, "output_tokens": 1},
        },
    },
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "t1", "name": "Edit", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"file": "a.py"}'},
    },
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
)


@dataclass
class FakeUpstream:
    """Answers like both providers and records every request it gets."""

    seen: list[Seen] = field(default_factory=list)
    override: Handler | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        self.seen.append(Seen(request.method, request.path, request.query_string, headers, body))
        if self.override is not None:
            return await self.override(request)
        streaming = bool(body) and json.loads(body).get("stream") is True
        if request.path.endswith("/v1/messages"):
            if streaming:
                return _sse_response(MESSAGES_STREAM)
            return web.json_response(
                {
                    "content": [{"type": "text", "text": "ok"}],
                    "usage": {"input_tokens": 11, "output_tokens": 4},
                }
            )
        if request.path.endswith("/responses") and streaming:
            return _sse_response(RESPONSES_STREAM)
        if request.path.endswith("/chat/completions"):
            return web.json_response(
                {
                    "choices": [{"message": {"content": "fine"}}],
                    "usage": {"prompt_tokens": 21, "completion_tokens": 3},
                }
            )
        return web.json_response({"object": "list", "data": [{"id": "gpt-test"}]})


def _sse_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/event-stream")


@dataclass
class Clock:
    """A clock the tests move by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """A gateway in front of the fake upstream, and a client session."""

    gateway: ModelGateway
    upstream: FakeUpstream
    base: str
    client: aiohttp.ClientSession
    clock: Clock

    def openai(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def anthropic(self, token: str) -> dict[str, str]:
        return {"x-api-key": token, "anthropic-version": "2023-06-01"}

    async def post(
        self, path: str, headers: dict[str, str], body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        payload = body if body is not None else {"model": "gpt-test", "stream": True}
        async with self.client.post(self.base + path, json=payload, headers=headers) as response:
            return response.status, await response.read()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url(""))
    yield fake
    await server.close()


@pytest.fixture
async def rig(upstream: FakeUpstream) -> AsyncIterator[Rig]:
    providers = Providers(
        Upstream(f"{upstream.url}/v1", OPENAI_KEY), Upstream(upstream.url, ANTHROPIC_KEY)
    )
    clock = Clock()
    gateway = ModelGateway(providers, CEILINGS, clock=clock, timeout=aiohttp.ClientTimeout(total=5))
    port = await gateway.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as client:
        yield Rig(gateway, upstream, f"http://127.0.0.1:{port}", client, clock)
    await gateway.stop()
    await asyncio.sleep(0)
