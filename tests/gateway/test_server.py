"""The gateway on loopback in front of a recording fake upstream: keys, tokens, budgets, errors."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from forge.localnet import free_port
from gateway import Budget, ModelGateway, Providers, Upstream
from tests.gateway.conftest import (
    ANTHROPIC_KEY,
    CEILINGS,
    OPENAI_KEY,
    RESPONSES_STREAM,
    FakeUpstream,
    Rig,
)

BIG = Budget(requests=100, tokens=10**6, seconds=600)


async def test_upstream_gets_the_real_key_and_never_the_token(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    status, body = await rig.post("/openai/v1/responses", rig.openai(token))
    assert status == 200
    assert body == RESPONSES_STREAM
    anthropic_headers = rig.anthropic(token) | {"anthropic-beta": "tools-2024"}
    status, body = await rig.post(
        "/anthropic/v1/messages?beta=true", anthropic_headers, {"model": "claude-x"}
    )
    assert status == 200
    openai, anthropic = rig.upstream.seen
    assert (openai.path, openai.headers["Authorization"]) == (
        "/v1/responses",
        f"Bearer {OPENAI_KEY}",
    )
    assert "x-api-key" not in {name.lower() for name in openai.headers}
    assert (anthropic.path, anthropic.query) == ("/v1/messages", "beta=true")
    assert anthropic.headers["x-api-key"] == ANTHROPIC_KEY
    assert anthropic.headers["anthropic-version"] == "2023-06-01"
    assert anthropic.headers["anthropic-beta"] == "tools-2024"
    assert "authorization" not in {name.lower() for name in anthropic.headers}
    assert all(token not in json.dumps(seen.headers) for seen in rig.upstream.seen)


async def test_anthropic_bearer_token_works_too(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    status, _ = await rig.post("/anthropic/v1/messages", rig.openai(token), {"model": "c"})
    assert status == 200
    assert rig.upstream.seen[0].headers["x-api-key"] == ANTHROPIC_KEY


async def test_unknown_and_closed_tokens_are_refused(rig: Rig) -> None:
    status, body = await rig.post("/openai/v1/responses", rig.openai("gantry-made-up"))
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    token = rig.gateway.open_task("t1", BIG)
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 200
    usage = rig.gateway.close_task("t1")
    assert usage.requests == 1
    status, body = await rig.post("/anthropic/v1/messages", rig.anthropic(token), {})
    assert status == 401
    assert json.loads(body)["error"]["type"] == "authentication_error"
    status, _ = await rig.post("/openai/v1/responses", {})
    assert status == 401
    assert len(rig.upstream.seen) == 1


async def test_one_tasks_token_never_spends_anothers_budget(rig: Rig) -> None:
    token_a = rig.gateway.open_task("a", Budget(requests=1, tokens=10**6, seconds=600))
    token_b = rig.gateway.open_task("b", BIG)
    assert (await rig.post("/openai/v1/responses", rig.openai(token_a)))[0] == 200
    assert (await rig.post("/openai/v1/responses", rig.openai(token_a)))[0] == 403
    assert rig.gateway.usage("b").requests == 0
    assert rig.gateway.usage("a").input_tokens == 120
    assert (await rig.post("/openai/v1/responses", rig.openai(token_b)))[0] == 200
    assert rig.gateway.usage("b").requests == 1
    assert rig.gateway.usage("a").requests == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/openai/v1/files"),
        ("GET", "/openai/v1/responses"),
        ("POST", "/openai/v1/models"),
        ("POST", "/openai/v1/../admin"),
        ("POST", "/openai/v1/responses/../files"),
        ("POST", "/openai/v1/%2e%2e/admin"),
        ("GET", "/openai/v1/models/../../admin"),
        ("POST", "/openai/v1/chat/completions?api-version=1"),
        ("POST", "/anthropic/v1/complete"),
        ("POST", "/anthropic/v1/messages?beta=true&x=1"),
        ("POST", "/anthropic/v1/messages/batches"),
        ("HEAD", "/anthropic/api/hello"),
        ("GET", "/admin"),
    ],
)
async def test_paths_off_the_allowlist_never_reach_upstream(
    rig: Rig, method: str, path: str
) -> None:
    token = rig.gateway.open_task("t1", BIG)
    headers = {"Authorization": f"Bearer {token}", "x-api-key": token}
    url = URL(rig.base + path, encoded=True)
    async with rig.client.request(method, url, headers=headers, data=b"{}") as response:
        assert response.status == 404
        if method != "HEAD":
            body = await response.json()
            assert "error" in body
    assert rig.upstream.seen == []
    assert rig.gateway.usage("t1").requests == 0


async def test_a_websocket_upgrade_is_refused(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await rig.client.ws_connect(rig.base + "/openai/v1/responses", headers=rig.openai(token))
    assert refused.value.status == 426
    assert rig.upstream.seen == []


async def test_streams_reach_the_agent_unbuffered(rig: Rig) -> None:
    got_first = asyncio.Event()

    async def two_events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"type": "response.created"}\n\n')
        await asyncio.wait_for(got_first.wait(), 5)
        await response.write(RESPONSES_STREAM)
        await response.write_eof()
        return response

    rig.upstream.override = two_events
    token = rig.gateway.open_task("t1", BIG)
    url = rig.base + "/openai/v1/responses"
    async with rig.client.post(url, json={"stream": True}, headers=rig.openai(token)) as response:
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 3)
        assert first == b'data: {"type": "response.created"}\n\n'
        got_first.set()
        rest = await response.read()
    assert rest == RESPONSES_STREAM
    assert rig.gateway.usage("t1").output_tokens == 7


async def test_usage_is_counted_for_both_providers_streamed_or_not(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    await rig.post(
        "/openai/v1/responses",
        rig.openai(token),
        {"model": "gpt-a", "stream": True, "input": [{"role": "user", "content": "list files"}]},
    )
    await rig.post("/openai/v1/chat/completions", rig.openai(token), {"model": "gpt-b"})
    await rig.post(
        "/anthropic/v1/messages",
        rig.anthropic(token),
        {"model": "claude-c", "stream": True, "messages": [{"role": "user", "content": "edit"}]},
    )
    await rig.post("/anthropic/v1/messages", rig.anthropic(token), {"model": "claude-c"})
    usage = rig.gateway.close_task("t1")
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (
        4,
        120 + 21 + 80 + 11,
        7 + 3 + 9 + 4,
    )
    assert usage.models == ("gpt-a", "gpt-b", "claude-c")
    assert usage.summary() == ("model gpt-a, gpt-b, claude-c · 4 requests · 232 tokens in / 23 out")
    responses, chat, messages, plain = usage.exchanges
    assert responses.answer == "Hello world"
    assert responses.tool_calls == ('exec_command({"cmd": "ls"})',)
    assert "list files" in responses.request
    assert chat.answer == "fine"
    assert messages.answer == "Hi"
    assert messages.tool_calls == ('Edit({}{"file": "a.py"})',)
    assert plain.answer == "ok"
    assert plain.status == 200


async def test_the_request_budget_stops_calls_before_upstream(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(requests=3, tokens=10**6, seconds=600))
    statuses = [(await rig.post("/openai/v1/responses", rig.openai(token)))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    url = rig.base + "/openai/v1/responses"
    async with rig.client.post(url, json={}, headers=rig.openai(token)) as response:
        assert response.status == 403
        assert response.headers["x-should-retry"] == "false"
        error = (await response.json())["error"]
    assert error["message"] == "Gantry budget exhausted: 3 requests of 3"
    assert error["code"] == "gantry_budget_exhausted"
    status, body = await rig.post("/anthropic/v1/messages", rig.anthropic(token), {})
    assert status == 403
    assert json.loads(body)["error"]["type"] == "permission_error"
    assert len(rig.upstream.seen) == 3
    usage = rig.gateway.usage("t1")
    assert (usage.requests, usage.budget_exhausted) == (3, "requests")
    assert usage.budget_message == "Gantry budget exhausted: 3 requests of 3"


async def test_the_token_budget_counts_input_and_output(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(requests=100, tokens=127, seconds=600))
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 200
    status, body = await rig.post("/openai/v1/responses", rig.openai(token))
    assert status == 403
    assert json.loads(body)["error"]["message"] == "Gantry budget exhausted: 127 tokens of 127"
    assert rig.gateway.usage("t1").budget_exhausted == "tokens"
    assert len(rig.upstream.seen) == 1


async def test_the_time_budget_runs_from_open_task(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(requests=100, tokens=10**6, seconds=60))
    rig.clock.now += 59
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 200
    rig.clock.now += 1
    status, body = await rig.post("/openai/v1/responses", rig.openai(token))
    assert status == 403
    assert "60 s of wall time of 60 s" in json.loads(body)["error"]["message"]
    assert rig.gateway.usage("t1").budget_exhausted == "time"


async def test_budgets_are_capped_by_the_server_ceilings(rig: Rig) -> None:
    huge = Budget(requests=10**6, tokens=10**12, seconds=10**6)
    assert huge.capped(CEILINGS) == CEILINGS
    token = rig.gateway.open_task("t1", Budget(requests=10**6, tokens=10**12, seconds=10**6))
    rig.clock.now += CEILINGS.seconds
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 403


@pytest.mark.parametrize("status", [429, 500])
async def test_upstream_errors_pass_through_and_name_the_provider(rig: Rig, status: int) -> None:
    error = {"error": {"message": f"upstream says {status}", "type": "x", "code": None}}

    async def failing(_request: web.Request) -> web.Response:
        return web.json_response(error, status=status, headers={"retry-after": "7"})

    rig.upstream.override = failing
    token = rig.gateway.open_task("t1", BIG)
    url = rig.base + "/openai/v1/responses"
    async with rig.client.post(url, json={}, headers=rig.openai(token)) as response:
        assert response.status == status
        assert response.headers["retry-after"] == "7"
        assert await response.json() == error
    usage = rig.gateway.usage("t1")
    assert usage.provider_error == f"the openai API answered {status}: upstream says {status}"
    assert usage.errors == (usage.provider_error,)


async def test_an_upstream_error_that_is_not_json_gets_the_provider_shape(rig: Rig) -> None:
    async def proxy_page(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>bad gateway</html>", content_type="text/html")

    rig.upstream.override = proxy_page
    token = rig.gateway.open_task("t1", BIG)
    status, body = await rig.post("/anthropic/v1/messages", rig.anthropic(token), {})
    assert status == 503
    error = json.loads(body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert "503" in error["error"]["message"]
    assert "<html>bad gateway</html>" in (rig.gateway.usage("t1").provider_error or "")


async def test_an_unreachable_upstream_is_a_provider_shaped_502() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = ModelGateway(
        Providers(Upstream(dead + "/v1", OPENAI_KEY), Upstream(dead, ANTHROPIC_KEY)), CEILINGS
    )
    port = await gateway.start("127.0.0.1", 0)
    try:
        token = gateway.open_task("t1", BIG)
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/anthropic/v1/messages"
            async with client.post(url, json={}, headers={"x-api-key": token}) as response:
                assert response.status == 502
                error = await response.json()
        assert error["type"] == "error"
        assert error["error"]["type"] == "api_error"
        assert "could not reach the anthropic API" in error["error"]["message"]
        usage = gateway.close_task("t1")
        assert usage.provider_error is not None
        assert usage.provider_error.startswith("Gantry could not reach the anthropic API")
        assert usage.requests == 1
    finally:
        await gateway.stop()


async def test_the_real_key_never_reaches_the_agent_the_log_or_log_lines(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo_key(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "")
        error = {"error": {"message": f"Incorrect API key provided: {key}", "type": "auth"}}
        return web.json_response(error, status=401)

    caplog.set_level(logging.DEBUG)
    token = rig.gateway.open_task("t1", BIG)
    await rig.post("/openai/v1/responses", rig.openai(token))
    rig.upstream.override = echo_key
    status, body = await rig.post(
        "/openai/v1/responses", rig.openai(token), {"model": "m", "input": OPENAI_KEY}
    )
    assert status == 401
    assert OPENAI_KEY not in body.decode()
    assert "[REDACTED]" in body.decode()
    usage = rig.gateway.close_task("t1")
    assert usage.provider_error is not None
    assert "[REDACTED]" in usage.provider_error
    dump = repr(usage) + caplog.text + repr(rig.gateway.providers)
    assert OPENAI_KEY not in dump
    assert ANTHROPIC_KEY not in dump
    assert usage.exchanges[1].request == '"[REDACTED]"'


async def test_a_task_key_overrides_the_servers(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG, keys={"openai": "sk-repo-own"})
    await rig.post("/openai/v1/responses", rig.openai(token))
    assert rig.upstream.seen[0].headers["Authorization"] == "Bearer sk-repo-own"


async def test_no_key_for_the_provider_is_a_provider_error(upstream: FakeUpstream) -> None:
    providers = Providers(Upstream(upstream.url + "/v1", None), Upstream(upstream.url, None))
    gateway = ModelGateway(providers, CEILINGS)
    port = await gateway.start("127.0.0.1", 0)
    try:
        token = gateway.open_task("t1", BIG)
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/openai/v1/responses"
            async with client.post(url, json={}, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 401
        assert "GANTRY_OPENAI_API_KEY" in (gateway.usage("t1").provider_error or "")
        assert upstream.seen == []
    finally:
        await gateway.stop()


async def test_a_body_over_the_limit_is_refused(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    url = rig.base + "/openai/v1/responses"
    big = b"x" * (33 * 1024 * 1024)
    async with rig.client.post(url, data=big, headers=rig.openai(token)) as response:
        assert response.status == 413
    assert rig.upstream.seen == []
    assert rig.gateway.usage("t1").requests == 0
