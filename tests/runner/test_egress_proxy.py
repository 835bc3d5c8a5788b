"""The egress proxy's I/O, in this process against local upstreams: the attacks of issue 11."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from forge.localnet import free_port
from runner import egress
from runner.egress import Policy, Tls
from runner.task_ca import TaskTls, issue_task_tls

QUIET_S = 0.3
GET = b"GET http://plain.test/a HTTP/1.1\r\nHost: plain.test\r\n\r\n"
POST = b"POST http://plain.test/b HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 2\r\n\r\nhi"


@dataclass
class Upstream:
    """A server that records every byte it receives and answers once, then closes."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        """Everything received on every connection."""
        return b"".join(self.received)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read until the client is quiet, then answer and close."""
        data = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), QUIET_S)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture(scope="module")
def upstream_tls() -> TaskTls:
    """A certificate for secure.test from a CA only the proxy's upstream check trusts."""
    return issue_task_tls("upstream", ["secure.test"])


@pytest.fixture(scope="module")
def task_tls() -> TaskTls:
    """The per-task CA and the leaf the proxy serves."""
    return issue_task_tls("t1", ["secure.test", "plain.test"])


async def start(handler: object, context: ssl.SSLContext | None = None) -> asyncio.Server:
    """A server on a free local port."""
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)  # type: ignore[arg-type]


def port_of(server: asyncio.Server) -> int:
    """The port a server listens on."""
    return int(server.sockets[0].getsockname()[1])


@pytest_asyncio.fixture
async def plain_upstream() -> AsyncIterator[Upstream]:
    """A plain HTTP upstream."""
    upstream = Upstream()
    server = await start(upstream.serve)
    upstream.port = port_of(server)
    yield upstream
    server.close()


@pytest_asyncio.fixture
async def tls_upstream(upstream_tls: TaskTls) -> AsyncIterator[Upstream]:
    """An HTTPS upstream for secure.test."""
    upstream = Upstream()
    server = await start(upstream.serve, egress.server_context(upstream_tls.proxy_pem))
    upstream.port = port_of(server)
    yield upstream
    server.close()


@pytest_asyncio.fixture
async def proxy(
    plain_upstream: Upstream, tls_upstream: Upstream, task_tls: TaskTls, upstream_tls: TaskTls
) -> AsyncIterator[int]:
    """The proxy: GET only, both names mapped to the local upstreams, HTTPS intercepted."""
    policy = Policy(
        ("plain.test", "secure.test"),
        ("GET",),
        {
            "plain.test": ("127.0.0.1", plain_upstream.port),
            "secure.test": ("127.0.0.1", tls_upstream.port),
        },
    )
    tls = Tls(
        egress.server_context(task_tls.proxy_pem),
        egress.upstream_context(upstream_tls.ca_pem.decode()),
    )
    server = await start(lambda r, w: egress.handle(policy, tls, r, w))
    yield port_of(server)
    server.close()


def decisions(out: str) -> list[dict[str, object]]:
    """The proxy's JSON lines."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def send(port: int, data: bytes) -> bytes:
    """Send bytes to the proxy in one write; everything it answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def send_in_tunnel(port: int, host: str, ca_pem: bytes, data: bytes) -> bytes:
    """CONNECT, TLS trusting only `ca_pem`, then bytes in one write; the answer to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cadata=ca_pem.decode())
    await writer.start_tls(context, server_hostname=host)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_a_post_pipelined_after_an_allowed_get_never_reaches_the_upstream(
    proxy: int, plain_upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = await send(proxy, GET + POST)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"ok")
    assert plain_upstream.received == [
        b"GET /a HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n"
    ]
    assert {"event": "blocked", "method": "", "target": "http://plain.test/a"} | {
        "reason": egress.PIPELINED
    } in decisions(capsys.readouterr().out)


async def test_a_body_is_forwarded_exactly_as_declared_and_no_further(
    proxy: int, plain_upstream: Upstream
) -> None:
    smuggled = b"GET http://plain.test/x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + POST
    await send(proxy, smuggled)
    assert plain_upstream.data.endswith(b"\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert b"POST" not in plain_upstream.data


async def test_a_chunked_body_is_reframed_and_what_follows_is_dropped(
    proxy: int, plain_upstream: Upstream
) -> None:
    chunked = b"GET http://plain.test/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    await send(proxy, chunked + b"3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n" + POST)
    assert plain_upstream.data.endswith(
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert b"POST" not in plain_upstream.data


async def test_a_body_that_disguises_its_length_is_refused(
    proxy: int, plain_upstream: Upstream
) -> None:
    both = b"GET http://plain.test/ HTTP/1.1\r\nContent-Length: 4\r\n"
    answer = await send(proxy, both + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + POST)
    assert answer.startswith(b"HTTP/1.1 403")
    assert plain_upstream.received == []


async def test_https_methods_hold_inside_the_tunnel(
    proxy: int, tls_upstream: Upstream, task_tls: TaskTls, capsys: pytest.CaptureFixture[str]
) -> None:
    get = b"GET /s HTTP/1.1\r\nHost: secure.test\r\n\r\n"
    post = b"POST /p HTTP/1.1\r\nHost: secure.test\r\nContent-Length: 2\r\n\r\nhi"
    refused = await send_in_tunnel(proxy, "secure.test", task_tls.ca_pem, post)
    assert refused.startswith(b"HTTP/1.1 403")
    assert tls_upstream.received == []
    answer = await send_in_tunnel(proxy, "secure.test", task_tls.ca_pem, get + post)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"ok")
    assert tls_upstream.received == [
        b"GET /s HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n"
    ]
    reasons = [d.get("reason") for d in decisions(capsys.readouterr().out)]
    assert reasons.count("method POST not allowed") == 1
    assert egress.PIPELINED in reasons


async def test_a_request_inside_the_tunnel_cannot_name_another_host(
    proxy: int, tls_upstream: Upstream, task_tls: TaskTls
) -> None:
    fronted = b"GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n"
    answer = await send_in_tunnel(proxy, "secure.test", task_tls.ca_pem, fronted)
    assert answer.startswith(b"HTTP/1.1 403")
    assert tls_upstream.received == []


async def test_the_upstream_is_verified_against_the_proxys_own_trust(
    tls_upstream: Upstream, task_tls: TaskTls
) -> None:
    policy = Policy(("secure.test",), ("GET",), {"secure.test": ("127.0.0.1", tls_upstream.port)})
    # The system bundle only: the upstream's private CA is not in it.
    tls = Tls(egress.server_context(task_tls.proxy_pem), egress.upstream_context(None))
    server = await start(lambda r, w: egress.handle(policy, tls, r, w))
    get = b"GET /s HTTP/1.1\r\nHost: secure.test\r\n\r\n"
    try:
        answer = await send_in_tunnel(port_of(server), "secure.test", task_tls.ca_pem, get)
    finally:
        server.close()
    assert answer == b""
    assert tls_upstream.received == []


async def test_restricted_methods_without_interception_refuse_https(
    tls_upstream: Upstream,
) -> None:
    policy = Policy(("secure.test",), ("GET",), {"secure.test": ("127.0.0.1", tls_upstream.port)})
    server = await start(
        lambda r, w: egress.handle(policy, Tls(None, egress.upstream_context(None)), r, w)
    )
    try:
        answer = await send(port_of(server), b"CONNECT secure.test:443 HTTP/1.1\r\n\r\n")
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 403")
    assert tls_upstream.received == []


async def test_the_relay_pipes_raw_bytes_to_its_one_target(plain_upstream: Upstream) -> None:
    server = await start(egress.relay_to(("127.0.0.1", plain_upstream.port)))
    try:
        answer = await send(port_of(server), b"anything at all\r\n")
    finally:
        server.close()
    assert answer.endswith(b"ok")
    assert plain_upstream.received == [b"anything at all\r\n"]


async def test_closed_relays_drop_their_open_connections_and_take_no_new_ones(
    plain_upstream: Upstream,
) -> None:
    relays = egress.Relays()
    server = await start(egress.relay_to(("127.0.0.1", plain_upstream.port), relays.open_writers))
    relays.servers.append(server)
    port = port_of(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"first ")
        await writer.drain()
        while not relays.open_writers:  # noqa: ASYNC110 (the relay adds its ends itself)
            await asyncio.sleep(0.01)
        relays.close()
        relays.close()  # a second close does nothing
        # The open connection ends before the upstream would have answered it.
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_held_relays_listen_once_opened_and_never_after_a_close(
    plain_upstream: Upstream,
) -> None:
    port = free_port()
    relays = egress.Relays(((port, "127.0.0.1", plain_upstream.port),))
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await relays.open()
    try:
        assert (await send(port, b"through\r\n")).endswith(b"ok")
    finally:
        relays.close()
    await relays.open()  # a close is for good
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert plain_upstream.received == [b"through\r\n"]
