"""Attacks on the gateway, judged by what they cost it: its memory (a gateway in its own
process, measured by RSS), the statuses the attacker gets, and what reaches the upstream."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from bot.task_page import exchange_html
from gateway import Budget, ModelGateway, Providers, Upstream
from gateway.connections import HeadLimits
from gateway.ledger import Pacing
from runner.agent_step import usage_record
from tests.bot.test_bad_requests import flood_leaves_one_quiet_line_each
from tests.gateway.conftest import CEILINGS, FakeUpstream, Rig

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
# A gateway with its default settings in a process of its own: prints its port and a token.
GATEWAY_PROCESS = """
import asyncio, sys
from gateway import Budget, ModelGateway, Providers, Upstream
async def main():
    upstream, requests = sys.argv[1], int(sys.argv[2])
    providers = Providers(Upstream(upstream + "/v1", "sk-a"), Upstream(upstream, "sk-b"))
    gateway = ModelGateway(providers, Budget(10**6, 10**12, 10**6))
    port = await gateway.start("127.0.0.1", 0)
    token = gateway.open_task("t", Budget(requests, 10**12, 10**6))
    print(port, token, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@dataclass
class Process:
    """The gateway's process, its port and a task's token."""

    popen: subprocess.Popen[str]
    port: int
    token: str

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Resident memory now (`VmRSS`) or at its peak (`VmHWM`)."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024


@contextlib.contextmanager
def gateway_process(upstream: str, requests: int = 1000) -> Iterator[Process]:
    popen = subprocess.Popen(
        [sys.executable, "-c", GATEWAY_PROCESS, upstream, str(requests)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert popen.stdout is not None
        port, token = popen.stdout.readline().split()
        yield Process(popen, int(port), token)
    finally:
        popen.kill()
        popen.wait()


async def send_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write what the gateway still takes (it may close the connection any time)."""
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        await writer.drain()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the gateway ends the connection within `seconds` (answering first, or not)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def healthz(port: int, local: str) -> int:
    """The gateway's health answer to a client on another loopback address."""
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status


# -- before any token: request heads ----------------------------------------------------------

# The review's flood (120 lines of 8 KB), and the largest unfinished head the limits allow.
FLOOD_HEADS = [
    b"POST /openai/v1/responses HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: " % n + b"a" * size + b"\r\n" for n in range(lines))
    for lines, size in ((120, 8000), (60, 4000))
]


@pytest.mark.parametrize("head", FLOOD_HEADS, ids=["review", "within-limits"])
async def test_a_flood_of_unfinished_heads_leaves_the_gateway_small(
    upstream: FakeUpstream, head: bytes
) -> None:
    with gateway_process(upstream.url) as gateway:
        await asyncio.sleep(0.5)
        before = gateway.rss_mib()
        connections = []
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            except ConnectionError:
                continue
            await send_quietly(writer, head)
            connections.append((reader, writer))
        await asyncio.sleep(1)
        grown = gateway.rss_mib() - before
        assert await healthz(gateway.port, "127.0.0.2") == 200
        for _, writer in connections:
            writer.close()
    assert grown < 64, f"200 unfinished heads grew the gateway by {grown:.0f} MiB"


async def test_an_unfinished_head_is_closed_but_an_idle_connection_is_kept(
    upstream: FakeUpstream,
) -> None:
    gateway = ModelGateway(
        Providers(Upstream(upstream.url + "/v1", "sk-a"), Upstream(upstream.url, "sk-b")),
        CEILINGS,
        limits=HeadLimits(head_seconds=0.5),
    )
    port = await gateway.start("127.0.0.1", 0)
    try:
        slow, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        idle, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await idle.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        assert await closed_within(slow, 3)
        assert not await closed_within(idle, 1.5)
        idle_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await idle.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        for writer in (slow_writer, idle_writer):
            writer.close()
    finally:
        await gateway.stop()


async def test_connections_past_the_per_address_cap_are_closed(upstream: FakeUpstream) -> None:
    gateway = ModelGateway(
        Providers(Upstream(upstream.url + "/v1", "sk-a"), Upstream(upstream.url, "sk-b")),
        CEILINGS,
        limits=HeadLimits(per_address=3, connections=5),
    )
    port = await gateway.start("127.0.0.1", 0)
    try:
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        closed = [await closed_within(reader, 0.5) for reader, _ in opened]
        assert closed == [False, False, False, True, True]
        assert await healthz(port, "127.0.0.2") == 200
        for _, writer in opened:
            writer.close()
        await asyncio.sleep(0.1)
        assert await healthz(port, "127.0.0.1") == 200
    finally:
        await gateway.stop()


# -- with a token: bodies ---------------------------------------------------------------------


def parked_head(token: str) -> bytes:
    return (
        b"POST /openai/v1/responses HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Length: 33554000\r\nContent-Type: application/json\r\n\r\n"
    )


async def test_parked_bodies_past_the_budget_are_never_read(upstream: FakeUpstream) -> None:
    with gateway_process(upstream.url, requests=1) as gateway:
        await asyncio.sleep(0.5)
        before = gateway.rss_mib()
        connections = []
        for _ in range(12):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            await send_quietly(writer, parked_head(gateway.token))
            for _ in range(30):
                await send_quietly(writer, b"a" * MIB)
            connections.append((reader, writer))
        await asyncio.sleep(1)
        grown = gateway.rss_mib() - before
        answered = []
        for reader, _ in connections:
            with contextlib.suppress(TimeoutError):
                answered.append(await asyncio.wait_for(reader.read(12), 0.2))
        for _, writer in connections:
            writer.close()
    assert grown < 100, f"12 parked bodies grew the gateway by {grown:.0f} MiB"
    assert answered.count(b"HTTP/1.1 403") == 11


async def test_a_body_that_never_ends_gets_408_and_a_quiet_log(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = ModelGateway(
        Providers(Upstream(upstream.url + "/v1", "sk-a"), Upstream(upstream.url, "sk-b")),
        CEILINGS,
        pacing=Pacing(body_seconds=0.5),
    )
    port = await gateway.start("127.0.0.1", 0)
    token = gateway.open_task("t", Budget(100, 10**6, 600))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(parked_head(token) + b"a" * MIB)
        assert (await asyncio.wait_for(reader.read(12), 3)) == b"HTTP/1.1 408"
        writer.close()
        with caplog.at_level(logging.INFO):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(parked_head(token) + b"a" * MIB)
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.transport.abort()
            await asyncio.sleep(0.2)
    finally:
        await gateway.stop()
    assert upstream.seen == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_one_huge_body_of_tiny_items_is_refused_unparsed(upstream: FakeUpstream) -> None:
    body = b'{"model":"gpt-big","input":[' + b"{}," * (10_000_000 - 1) + b"{}]}"
    with gateway_process(upstream.url) as gateway:
        await asyncio.sleep(0.5)
        before = gateway.rss_mib("VmHWM")
        headers = {"Authorization": f"Bearer {gateway.token}"}
        url = f"http://127.0.0.1:{gateway.port}/openai/v1/responses"
        async with (
            aiohttp.ClientSession() as client,
            client.post(url, data=body, headers=headers) as r,
        ):
            assert r.status == 413
            assert "too many to check" in (await r.json())["error"]["message"]
        grown = gateway.rss_mib("VmHWM") - before
    assert upstream.seen == []
    assert grown < 200, f"one {len(body) / MIB:.0f} MiB body grew the gateway's peak by {grown:.0f}"


async def test_the_largest_body_is_parsed_at_a_bounded_cost(upstream: FakeUpstream) -> None:
    async def small_answer(_request: web.Request) -> web.Response:
        return web.json_response({"usage": {"input_tokens": 1, "output_tokens": 1}})

    upstream.override = small_answer
    # One character outside Latin-1 makes Python hold the whole text at 4 bytes a character.
    text = "a" * (31 * MIB) + "\U0001f600"
    body = json.dumps({"model": "m", "input": [{"role": "user", "content": text}]}).encode()
    with gateway_process(upstream.url) as gateway:
        await asyncio.sleep(0.5)
        before = gateway.rss_mib("VmHWM")
        headers = {"Authorization": f"Bearer {gateway.token}"}
        url = f"http://127.0.0.1:{gateway.port}/openai/v1/responses"
        async with (
            aiohttp.ClientSession() as client,
            client.post(url, data=body, headers=headers) as r,
        ):
            assert r.status == 200
        grown = gateway.rss_mib("VmHWM") - before
    assert upstream.seen[0].body == body
    assert grown < 300, f"one {len(body) / MIB:.0f} MiB body grew the gateway's peak by {grown:.0f}"


@pytest.mark.parametrize(("body", "reason"), [(b"[" * 100_000, "nested"), (b"{nope", "valid")])
async def test_a_body_the_gateway_cannot_parse_gets_400(rig: Rig, body: bytes, reason: str) -> None:
    token = rig.gateway.open_task("t1", Budget(100, 10**6, 600))
    url = rig.base + "/openai/v1/responses"
    async with rig.client.post(url, data=body, headers=rig.openai(token)) as response:
        assert response.status == 400
        assert reason in (await response.json())["error"]["message"]
    assert rig.upstream.seen == []
    usage = rig.gateway.close_task("t1")
    assert (usage.requests, usage.provider_error) == (1, None)


# -- budgets under parallel requests ---------------------------------------------------------


async def test_parallel_requests_do_not_outrun_the_token_budget(rig: Rig) -> None:
    async def slow_answer(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({"usage": {"input_tokens": 900, "output_tokens": 100}})

    rig.upstream.override = slow_answer
    token = rig.gateway.open_task("t1", Budget(requests=500, tokens=2000, seconds=600))
    # 900 input tokens' worth of body, as an agent's request would be.
    body = {"model": "gpt-test", "input": [{"role": "user", "content": "x" * 3550}]}

    async def one() -> int:
        return (await rig.post("/openai/v1/responses", rig.openai(token), body))[0]

    statuses = await asyncio.gather(*(one() for _ in range(30)))
    usage = rig.gateway.close_task("t1")
    assert usage.tokens <= 3000, f"{usage.tokens:,} tokens spent against a budget of 2,000"
    assert len(rig.upstream.seen) <= 3
    assert statuses.count(403) == 30 - len(rig.upstream.seen)


async def test_requests_past_the_in_flight_cap_wait_for_a_slot(upstream: FakeUpstream) -> None:
    release = asyncio.Event()
    waiting = 0

    async def held(_request: web.Request) -> web.Response:
        nonlocal waiting
        waiting += 1
        await release.wait()
        return web.json_response({"usage": {"input_tokens": 1, "output_tokens": 1}})

    upstream.override = held
    gateway = ModelGateway(
        Providers(Upstream(upstream.url + "/v1", "sk-a"), Upstream(upstream.url, "sk-b")),
        CEILINGS,
        pacing=Pacing(in_flight=2),
    )
    port = await gateway.start("127.0.0.1", 0)
    token = gateway.open_task("t", Budget(100, 10**6, 600))
    url = f"http://127.0.0.1:{port}/openai/v1/responses"
    try:
        async with aiohttp.ClientSession() as client:

            async def one() -> int:
                headers = {"Authorization": f"Bearer {token}"}
                async with client.post(url, json={"model": "m"}, headers=headers) as response:
                    return response.status

            calls = [asyncio.create_task(one()) for _ in range(5)]
            await asyncio.sleep(0.5)
            assert waiting == 2
            release.set()
            assert await asyncio.gather(*calls) == [200] * 5
    finally:
        await gateway.stop()


async def test_requests_waiting_for_a_slot_end_when_their_task_closes(
    upstream: FakeUpstream,
) -> None:
    release = asyncio.Event()

    async def held(_request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"usage": {"input_tokens": 1, "output_tokens": 1}})

    upstream.override = held
    gateway = ModelGateway(
        Providers(Upstream(upstream.url + "/v1", "sk-a"), Upstream(upstream.url, "sk-b")),
        CEILINGS,
        pacing=Pacing(in_flight=1, queue_seconds=300),
    )
    port = await gateway.start("127.0.0.1", 0)
    token = gateway.open_task("t", Budget(100, 10**6, 600))
    url = f"http://127.0.0.1:{port}/openai/v1/responses"
    try:
        async with aiohttp.ClientSession() as client:

            async def one() -> tuple[int, str]:
                headers = {"Authorization": f"Bearer {token}"}
                async with client.post(url, json={"model": "m"}, headers=headers) as response:
                    return response.status, await response.text()

            holding = asyncio.create_task(one())
            await asyncio.sleep(0.3)
            waiting = [asyncio.create_task(one()) for _ in range(3)]
            await asyncio.sleep(0.3)
            gateway.close_task("t")
            async with asyncio.timeout(5):
                answers = await asyncio.gather(*waiting)
            assert [status for status, _ in answers] == [401] * 3
            assert all("agent phase has ended" in text for _, text in answers)
            assert len(upstream.seen) == 1
            release.set()
            assert (await holding)[0] == 200
    finally:
        await gateway.stop()


# -- what the task page shows ----------------------------------------------------------------

SECRET = "pg-superuser-pass-7f3a9c1e"


async def test_the_tasks_secrets_are_masked_in_the_session_log(rig: Rig) -> None:
    async def echo(_request: web.Request) -> web.Response:
        text = f"the password is {SECRET}"
        return web.json_response(
            {
                "output": [{"type": "message", "content": [{"text": text}]}],
                "usage": {"input_tokens": 5, "output_tokens": 5},
            }
        )

    rig.upstream.override = echo
    token = rig.gateway.open_task("7", Budget(10, 10**6, 60), secrets=[SECRET])
    body = {"model": "m", "input": [{"role": "user", "content": f"PGPASSWORD={SECRET}"}]}
    assert (await rig.post("/openai/v1/responses", rig.openai(token), body))[0] == 200
    record = usage_record("codex", rig.gateway.close_task("7"))
    page = "".join(exchange_html(n, e) for n, e in enumerate(record["exchanges"], 1))
    assert "PGPASSWORD=" in page
    assert SECRET not in page
    assert SECRET not in json.dumps(record)


async def test_headers_choosing_another_openai_account_never_reach_upstream(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60))
    headers = rig.openai(token) | {"OpenAI-Organization": "org-other", "OpenAI-Project": "proj_x"}
    assert (await rig.post("/openai/v1/responses", headers))[0] == 200
    sent = {name.lower() for name in rig.upstream.seen[0].headers}
    assert not sent & {"openai-organization", "openai-project"}


async def test_a_compressed_body_goes_upstream_as_the_gateway_read_it(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60))
    body = json.dumps({"model": "gpt-test", "input": "hi"}).encode()
    headers = rig.openai(token) | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    url = rig.base + "/openai/v1/responses"
    async with rig.client.post(url, data=gzip.compress(body), headers=headers) as response:
        assert response.status == 200
    [seen] = rig.upstream.seen
    assert seen.body == body  # inflated by the gateway's server, so no longer gzip
    assert "content-encoding" not in {name.lower() for name in seen.headers}


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/openai/v1/responses", {"tools": [{"type": "mcp", "server_url": "https://x.example"}]}),
        ("/anthropic/v1/messages", {"mcp_servers": [{"url": "https://x.example/mcp"}]}),
        ("/anthropic/v1/messages", {"tools": [{"type": "web_fetch_20250910", "name": "f"}]}),
    ],
)
async def test_a_request_that_would_have_the_provider_reach_out_never_goes_upstream(
    rig: Rig, path: str, extra: dict[str, Any]
) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60))
    headers = rig.openai(token) if path.startswith("/openai") else rig.anthropic(token)
    status, answer = await rig.post(path, headers, {"model": "m", "input": "hi", **extra})
    assert status == 400
    assert b"Gantry's gateway refuses" in answer
    assert rig.upstream.seen == []


async def test_client_side_tools_and_web_search_still_go_upstream(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60))
    tools = [{"type": "function", "name": "shell"}, {"type": "web_search"}]
    body = {"model": "m", "input": "hi", "tools": tools}
    assert (await rig.post("/openai/v1/responses", rig.openai(token), body))[0] == 200
    assert len(rig.upstream.seen) == 1


async def test_malformed_request_heads_leave_no_tracebacks_in_the_workers_log(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await flood_leaves_one_quiet_line_each(URL(rig.base), caplog)


async def test_parallel_chunked_requests_do_not_outrun_the_token_budget(rig: Rig) -> None:
    async def slow_answer(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({"usage": {"input_tokens": 900, "output_tokens": 100}})

    rig.upstream.override = slow_answer
    token = rig.gateway.open_task("t1", Budget(requests=500, tokens=2000, seconds=600))
    body = json.dumps({"model": "gpt-test", "input": "x" * 3550}).encode()
    headers = rig.openai(token) | {"Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        yield body

    async def one() -> int:
        url = rig.base + "/openai/v1/responses"
        async with rig.client.post(url, data=chunks(), headers=headers) as response:
            return response.status

    await asyncio.gather(*(one() for _ in range(30)))
    usage = rig.gateway.close_task("t1")
    assert usage.tokens <= 3000, f"{usage.tokens:,} tokens spent against a budget of 2,000"
