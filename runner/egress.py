"""The egress proxy of sandbox networks: listed domains only, optionally only some methods.

Standard library only, and one file: Gantry passes this source as one `python3 -c` argument
to a read-only, unprivileged container (`--allow pypi.org --allow '*.pythonhosted.org'`).
Each connection carries exactly one request with exactly its declared body, written upstream
by the proxy itself with `Connection: close`; whatever a client pipelines after it is dropped
with the connection. With a method restriction, HTTPS is intercepted: the proxy terminates TLS
with a leaf of a per-task CA (PEM in GANTRY_EGRESS_TLS), checks the one request inside and
sends it over a fresh TLS connection verified against the system CA bundle. Without one,
CONNECT is a blind tunnel to an allowed host. `--relay PORT=ADDRESS:PORT` also pipes raw TCP
from PORT to one fixed address (the model gateway). With `--relay-held` the relays listen only
from SIGUSR2 on (sent once maintenance is over); on SIGUSR1 (sent when the agent phase ends)
every relay stops listening and drops its open connections, for good, while the proxy port
goes on serving. Each decision is one JSON line on stdout, which the runner reads back
for the task's report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

LISTEN_PORT = 3128
RELAY_PORT = 3129
# Inside its own container; only the task's internal network reaches it (its other leg is on
# Gantry's outward network, where no container reaches another).
LISTEN_ADDRESS = "0.0.0.0"  # noqa: S104
MAX_HEAD_BYTES = 64 * 1024
MAX_HELLO_BYTES = 16 * 1024 + 5
CONNECT_PORTS = (443,)
HTTP_PORTS = (80,)
READY = "egress proxy ready"
# Maintenance is over: held relays to the model gateway start listening.
OPEN_RELAYS = signal.SIGUSR2
RELAYS_OPEN = "egress relays open"
# The agent phase is over: the relays to the model gateway close for good.
CLOSE_RELAYS = signal.SIGUSR1
RELAYS_CLOSED = "egress relays closed"
TLS_ENV = "GANTRY_EGRESS_TLS"
# Tests only: a CA the proxy trusts upstream besides the system bundle (a local TLS server).
UPSTREAM_CA_ENV = "GANTRY_EGRESS_UPSTREAM_CA"
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)
# The proxy writes these itself, from what it checked.
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
IDLE_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 15.0
BLOCKED_RESPONSE = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"blocked by gantry egress policy: "
)
CONNECT_OK = b"HTTP/1.1 200 Connection Established\r\n\r\n"
PIPELINED = "a second request on one connection; the connection was closed"
TLS_HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME_EXT = 0x0000
CHUNK = 65536
CHUNKED = -1
NO_BODY = -2
MAX_CHUNK_DIGITS = 15
# The decision log is bounded whatever the client sends: each field is cut, and after
# MAX_RECORDS lines (or MAX_LOG_BYTES) only a count of the refused requests goes on.
MAX_FIELD_CHARS = 256
MAX_RECORDS = 1000
MAX_LOG_BYTES = 512 * 1024
UNRECORDED = "unrecorded"
# Once each (ready, relays opened, relays closed): written whatever the cap.
CONTROL_EVENTS = frozenset({"ready", "relays_open", "relays_closed"})


class Refused(Exception):
    """A request the policy does not let out; the message is the recorded reason."""


class RefusedInTunnel(Refused):
    """Refused after the tunnel was promised: the connection is simply closed."""


class Source(Protocol):
    """What the proxy reads a client or an upstream from: a stream, or decrypted TLS."""

    async def read(self, n: int = -1, /) -> bytes:
        """Up to n bytes; empty at the end."""

    async def readexactly(self, n: int, /) -> bytes:
        """Exactly n bytes, or IncompleteReadError."""

    async def readuntil(self, separator: bytes = b"\n", /) -> bytes:
        """Up to and including the separator, within the head limit."""


class Sink(Protocol):
    """What the proxy writes a client or an upstream to."""

    def write(self, data: bytes, /) -> None:
        """Queue bytes."""

    async def drain(self) -> None:
        """Wait until the queue is flushed."""

    def close(self) -> None:
        """End the connection."""


@dataclass(frozen=True)
class Policy:
    """Allowed domains (exact or `*.suffix`), allowed methods (empty: all), test name maps."""

    allow: tuple[str, ...]
    methods: tuple[str, ...] = ()
    mapped: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """The policy, the proxy's port, and raw relays (listen port → fixed address and port)."""

    policy: Policy
    port: int = LISTEN_PORT
    relays: tuple[tuple[int, str, int], ...] = ()
    # The relays listen only once opened (`OPEN_RELAYS`).
    relays_held: bool = False


@dataclass(frozen=True)
class Tls:
    """The interception leaf (None: no interception) and how upstreams are verified."""

    server: ssl.SSLContext | None
    upstream: ssl.SSLContext


@dataclass(frozen=True)
class Head:
    """A request line and its headers."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of a header, if any."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def values(self, name: str) -> list[str]:
        """Every value of a header."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


def normalise_host(host: str) -> str:
    """Lower case, without a trailing dot."""
    return host.strip().lower().rstrip(".")


def host_allowed(host: str, allow: Sequence[str]) -> bool:
    """Whether `host` matches an entry: `a.b` exactly, or `*.b` for any name under `b`."""
    name = normalise_host(host)
    for entry in allow:
        pattern = normalise_host(entry)
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


def _clean(text: str) -> bool:
    """No control characters: a bare CR or LF could split one request into two upstream."""
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text)


def parse_head(data: bytes) -> Head:
    """Parse a request head (up to the blank line); ValueError when it is not HTTP/1."""
    lines = data.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not _clean(lines[0]):
        raise ValueError("not an HTTP/1 request line")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or not _clean(line):
            raise ValueError("malformed header")
        headers.append((name, value.strip()))
    return Head(parts[0].upper(), parts[1], parts[2], headers)


def body_length(head: Head) -> int:
    """The body's declared length, CHUNKED, or NO_BODY; anything ambiguous is refused."""
    codings, lengths = head.values("Transfer-Encoding"), head.values("Content-Length")
    if codings:
        if lengths or len(codings) > 1 or codings[0].lower() != "chunked":
            raise Refused("only one of Content-Length or Transfer-Encoding: chunked")
        return CHUNKED
    if not lengths:
        return NO_BODY
    if len(set(lengths)) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
        raise Refused("bad Content-Length")
    return int(lengths[0])


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (extensions ignored); ValueError when garbled."""
    digits = line.removesuffix(b"\r\n").split(b";")[0].strip()
    if not digits or len(digits) > MAX_CHUNK_DIGITS or digits.strip(b"0123456789abcdefABCDEF"):
        raise ValueError("bad chunk size")
    return int(digits, 16)


def split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    """`host[:port]` → (host, port); IPv6 literals are refused (they are never listed)."""
    host, sep, port = authority.rpartition(":")
    if not sep:
        host, port = authority, str(default_port)
    if not host or "[" in host or not port.isdigit():
        raise Refused(f"bad authority {authority!r}")
    return normalise_host(host), int(port)


def check(policy: Policy, method: str, host: str, port: int) -> None:
    """Raise `Refused` unless the policy lets this method reach this host and port."""
    if not host_allowed(host, policy.allow):
        raise Refused("domain not allowed")
    if method == "CONNECT":
        if port not in CONNECT_PORTS and host not in policy.mapped:
            raise Refused(f"CONNECT only to port {CONNECT_PORTS}")
        return
    check_method(policy, method)
    if port not in HTTP_PORTS and host not in policy.mapped:
        raise Refused(f"plain HTTP only to port {HTTP_PORTS}")


def check_method(policy: Policy, method: str) -> None:
    """Raise `Refused` when the policy restricts methods and this is not one of them."""
    if policy.methods and method not in policy.methods:
        raise Refused(f"method {method} not allowed")


def _one_host_header(head: Head, host: str, port: int) -> None:
    """At most one Host header, naming the host the request goes to."""
    values = head.values("Host")
    if len(values) > 1 or (values and split_host_port(values[0], port)[0] != host):
        raise Refused("Host header differs from the URL")


def plain_target(head: Head) -> tuple[str, int, str]:
    """(host, port, origin-form path) of an absolute `http://` request; the Host must agree."""
    url = urlsplit(head.target)
    if url.scheme != "http" or not url.netloc or "@" in url.netloc:
        raise Refused("only absolute http:// URLs (and CONNECT for HTTPS) pass the proxy")
    host, port = split_host_port(url.netloc, 80)
    _one_host_header(head, host, port)
    path = url.path or "/"
    return host, port, path + (f"?{url.query}" if url.query else "")


def tunnel_target(head: Head, host: str, port: int) -> str:
    """The origin-form path of a request inside an intercepted tunnel to `host`."""
    target = head.target
    if not target.startswith("/"):
        url = urlsplit(target)
        if (
            url.scheme != "https"
            or "@" in url.netloc
            or split_host_port(url.netloc, 443)
            != (
                host,
                port,
            )
        ):
            raise Refused("the request names another host than the tunnel")
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    _one_host_header(head, host, port)
    return target


def upstream_request(head: Head, authority: str, path: str, length: int) -> bytes:
    """The request the proxy sends: its own Host, framing and `Connection: close`."""
    lines = [f"{head.method} {path} HTTP/1.1", f"Host: {authority}"]
    dropped = HOP_HEADERS | FRAMING_HEADERS
    lines += [f"{k}: {v}" for k, v in head.headers if k.lower() not in dropped]
    if length == CHUNKED:
        lines.append("Transfer-Encoding: chunked")
    elif length != NO_BODY:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def server_name(hello: bytes) -> str | None:
    """The SNI of a TLS ClientHello record, or None when there is none or it is not TLS."""
    try:
        if hello[0] != TLS_HANDSHAKE or hello[5] != CLIENT_HELLO:
            return None
        at = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        at += 1 + hello[at]  # session id
        at += 2 + int.from_bytes(hello[at : at + 2])  # cipher suites
        at += 1 + hello[at]  # compression methods
        end = at + 2 + int.from_bytes(hello[at : at + 2])
        at += 2
        while at + 4 <= end:
            kind, size = int.from_bytes(hello[at : at + 2]), int.from_bytes(hello[at + 2 : at + 4])
            if kind == SERVER_NAME_EXT:
                # list length (2), name type (1, 0 = host name), name length (2), name
                length = int.from_bytes(hello[at + 7 : at + 9])
                return hello[at + 9 : at + 9 + length].decode("ascii")
            at += 4 + size
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def clip(value: object) -> object:
    """A recorded field: text cut to MAX_FIELD_CHARS (a target may be 64 KiB), else as is."""
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


@dataclass
class Journal:
    """How much the proxy has written: the log stops at MAX_RECORDS lines or MAX_LOG_BYTES."""

    records: int = 0
    written: int = 0
    # Refused requests past the cap; announced at 1, 2, 4, 8, …: at most a line per doubling.
    unrecorded: int = 0

    def line(self, event: str, fields: dict[str, object]) -> str | None:
        """The JSON line to write for a decision, or None once the log is full."""
        line = json.dumps({"event": event, **{k: clip(v) for k, v in fields.items()}})
        if event in CONTROL_EVENTS:  # a few lines Gantry waits for: never left out
            return line
        if self.records < MAX_RECORDS and self.written + len(line) <= MAX_LOG_BYTES:
            self.records += 1
            self.written += len(line) + 1
            return line
        if event != "blocked":
            return None
        self.unrecorded += 1
        if self.unrecorded & (self.unrecorded - 1):
            return None
        return json.dumps({"event": UNRECORDED, "count": self.unrecorded})


JOURNAL = Journal()


def record(event: str, **fields: object) -> None:
    """One decision as a JSON line on stdout, while the log has room (see `Journal`)."""
    line = JOURNAL.line(event, fields)
    if line is not None:
        print(line, flush=True)


async def resolve(policy: Policy, host: str, port: int) -> tuple[str, int]:
    """Resolve here, never in the sandbox; refuse addresses that are not public."""
    if host in policy.mapped:
        return policy.mapped[host]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=1)
    except OSError as exc:
        raise Refused(f"cannot resolve: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        if ipaddress.ip_address(address).is_global:
            return address, port
    raise Refused("resolves only to non-public addresses")


async def open_upstream(
    policy: Policy, host: str, port: int, context: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to an allowed host; with a context, TLS verified for that host's name."""
    address, real_port = await resolve(policy, host, port)
    return await asyncio.wait_for(
        asyncio.open_connection(
            address, real_port, ssl=context, server_hostname=host if context else None
        ),
        CONNECT_TIMEOUT_S,
    )


async def pipe(reader: Source, writer: Sink) -> None:
    """Copy one direction until it ends, then close the writer."""
    try:
        while data := await asyncio.wait_for(reader.read(CHUNK), IDLE_TIMEOUT_S):
            writer.write(data)
            await writer.drain()
    except (OSError, TimeoutError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def copy_exact(reader: Source, writer: Sink, size: int) -> None:
    """Copy exactly `size` bytes, or fail."""
    while size > 0:
        data = await asyncio.wait_for(reader.read(min(size, CHUNK)), IDLE_TIMEOUT_S)
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        writer.write(data)
        await writer.drain()
        size -= len(data)


async def copy_chunked(reader: Source, writer: Sink) -> None:
    """Copy a chunked body chunk by chunk, re-framed by the proxy; trailers are dropped."""
    while size := chunk_size(await reader.readuntil(b"\r\n")):
        writer.write(b"%x\r\n" % size)
        await copy_exact(reader, writer, size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk without its line end")
        writer.write(b"\r\n")
    trailers = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        trailers += len(line)
        if trailers > MAX_HEAD_BYTES:
            raise ValueError("trailers too long")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def copy_body(reader: Source, writer: Sink, length: int) -> None:
    """Copy exactly the body the head declared."""
    if length == CHUNKED:
        await copy_chunked(reader, writer)
    elif length > 0:
        await copy_exact(reader, writer, length)


def _got_more(watch: asyncio.Task[bytes]) -> bool:
    """Whether the client sent anything after its one request."""
    if not watch.done():
        watch.cancel()
        return False
    return not watch.cancelled() and watch.exception() is None and bool(watch.result())


async def exchange(
    request: bytes,
    length: int,
    client: tuple[Source, Sink],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    target: str,
) -> None:
    """One request with exactly its body, the answer streamed back; nothing after it is sent."""
    reader, writer = client
    up_reader, up_writer = upstream
    up_writer.write(request)
    answer = asyncio.create_task(pipe(up_reader, writer))
    watch: asyncio.Task[bytes] | None = None
    try:
        await copy_body(reader, up_writer, length)
        await up_writer.drain()
        # The upstream gets no more from this connection; whatever the client sends now
        # (a pipelined request) is never read further, and the connection ends with the answer.
        watch = asyncio.create_task(reader.read(1))
        await answer
        if _got_more(watch):
            record("blocked", method="", target=target, reason=PIPELINED)
    finally:
        for task in (answer, watch):
            if task is not None and not task.done():
                task.cancel()
        with contextlib.suppress(OSError):
            up_writer.close()


class TlsWriter:
    """The client side of an intercepted tunnel: plaintext in, TLS records out."""

    def __init__(self, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, raw: asyncio.StreamWriter):
        self.tls, self.outgoing, self.raw = tls, outgoing, raw

    def write(self, data: bytes, /) -> None:
        """Encrypt and queue."""
        view = memoryview(data)
        while view:
            view = view[self.tls.write(view) :]
        self.raw.write(self.outgoing.read())

    async def drain(self) -> None:
        """Wait for the raw connection."""
        await self.raw.drain()

    def close(self) -> None:
        """Send close_notify (so a read-to-end answer ends cleanly), then close."""
        with contextlib.suppress(ssl.SSLError):
            self.tls.unwrap()
        with contextlib.suppress(OSError):
            self.raw.write(self.outgoing.read())
            self.raw.close()


class TlsReader:
    """The client side of an intercepted tunnel: TLS records in, plaintext out (bounded)."""

    def __init__(self, tls: ssl.SSLObject, bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO], raw: Sink):
        self.tls, (self.incoming, self.outgoing), self.raw = tls, bios, raw
        self.source: asyncio.StreamReader | None = None
        self.buffer = bytearray()

    async def _fill(self) -> bool:
        """Decrypt more into the buffer; False at the end of the stream."""
        assert self.source is not None
        while True:
            try:
                data = self.tls.read(CHUNK)
            except ssl.SSLWantReadError:
                self.raw.write(self.outgoing.read())
                raw = await asyncio.wait_for(self.source.read(CHUNK), IDLE_TIMEOUT_S)
                if not raw:
                    return False
                self.incoming.write(raw)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return False
            if not data:
                return False
            self.buffer += data
            return True

    async def read(self, n: int = -1, /) -> bytes:
        """Up to n bytes."""
        if not self.buffer and not await self._fill():
            return b""
        size = len(self.buffer) if n < 0 else n
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def readexactly(self, n: int, /) -> bytes:
        """Exactly n bytes."""
        while len(self.buffer) < n:
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self.buffer), n)
        return await self.read(n)

    async def readuntil(self, separator: bytes = b"\n", /) -> bytes:
        """Up to the separator, within MAX_HEAD_BYTES."""
        while (at := self.buffer.find(separator)) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise asyncio.LimitOverrunError("head too long", len(self.buffer))
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self.buffer), None)
        return await self.read(at + len(separator))


async def accept_tls(
    context: ssl.SSLContext,
    hello: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> tuple[TlsReader, TlsWriter]:
    """The TLS handshake with the client (its ClientHello already read), as the allowed host."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    plain = TlsReader(tls, (incoming, outgoing), writer)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            writer.write(outgoing.read())
            await writer.drain()
            data = await asyncio.wait_for(reader.read(CHUNK), CONNECT_TIMEOUT_S)
            if not data:
                raise ConnectionResetError("the client left during the TLS handshake") from None
            incoming.write(data)
    writer.write(outgoing.read())
    plain.source = reader
    return plain, TlsWriter(tls, outgoing, writer)


async def intercept(
    policy: Policy,
    tls: Tls,
    where: tuple[str, int],
    hello: bytes,
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Terminate TLS, check the one request inside, and send it on over verified TLS."""
    assert tls.server is not None
    host, port = where
    reader, writer = await accept_tls(tls.server, hello, *client)
    head = None
    try:
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        path = tunnel_target(head, host, port)
        check_method(policy, head.method)
        length = body_length(head)
        record("allowed", method=head.method, host=host, port=port, tls="intercepted")
        upstream = await open_upstream(policy, host, port, tls.upstream)
        request = upstream_request(head, host, path, length)
        await exchange(request, length, (reader, writer), upstream, f"https://{host}{path}")
    except Refused as exc:
        target = f"https://{host}{head.target}" if head else f"https://{host}"
        record("blocked", method=head.method if head else "", target=target, reason=str(exc))
        with contextlib.suppress(OSError):
            writer.write(BLOCKED_RESPONSE + str(exc).encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def read_hello(reader: asyncio.StreamReader) -> bytes:
    """The client's first TLS record (its ClientHello), bounded."""
    header = await reader.readexactly(5)
    return header + await reader.readexactly(min(int.from_bytes(header[3:5]), MAX_HELLO_BYTES))


async def handle_connect(
    policy: Policy,
    tls: Tls,
    head: Head,
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """HTTPS: only to an allowed host named again by the ClientHello; intercepted if methods."""
    host, port = split_host_port(head.target, 443)
    check(policy, "CONNECT", host, port)
    if policy.methods and tls.server is None:
        raise Refused("methods are restricted and no TLS interception is configured")
    reader, writer = client
    writer.write(CONNECT_OK)
    await writer.drain()
    hello = await read_hello(reader)
    sni = server_name(hello)
    if sni is None or normalise_host(sni) != host:
        raise RefusedInTunnel(f"TLS server name {sni!r} is not the CONNECT host")
    try:
        if policy.methods:
            await intercept(policy, tls, (host, port), hello, client)
            return
        record("allowed", method="CONNECT", host=host, port=port)
        up_reader, up_writer = await open_upstream(policy, host, port)
        up_writer.write(hello)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    except Refused as exc:
        raise RefusedInTunnel(str(exc)) from None


async def handle_plain(
    policy: Policy, head: Head, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Plain HTTP: one request per connection, written upstream by the proxy."""
    host, port, path = plain_target(head)
    check(policy, head.method, host, port)
    length = body_length(head)
    record("allowed", method=head.method, host=host, port=port)
    upstream = await open_upstream(policy, host, port)
    authority = host if port == HTTP_PORTS[0] else f"{host}:{port}"
    request = upstream_request(head, authority, path, length)
    await exchange(request, length, client, upstream, head.target)


async def handle(
    policy: Policy, tls: Tls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One client connection: decide, record, then relay or refuse."""
    head = None
    try:
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if head.method == "CONNECT":
            await handle_connect(policy, tls, head, (reader, writer))
        else:
            await handle_plain(policy, head, (reader, writer))
    except Refused as exc:
        method, target = (head.method, head.target) if head else ("", "")
        record("blocked", method=method, target=target, reason=str(exc))
        if not isinstance(exc, RefusedInTunnel):
            with contextlib.suppress(OSError):
                writer.write(BLOCKED_RESPONSE + str(exc).encode() + b"\n")
                await writer.drain()
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        record("blocked", method="", target="", reason="malformed request")
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        record("error", target=head.target if head else "", reason=str(exc))
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def relay(
    target: tuple[str, int],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    open_writers: set[asyncio.StreamWriter] | None = None,
) -> None:
    """Raw TCP to one fixed address (the model gateway), both ways, until either side ends;
    both ends are in `open_writers` meanwhile (to be closed from outside)."""
    try:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(*target), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        record("error", target=f"{target[0]}:{target[1]}", reason=f"relay: {exc}")
        writer.close()
        return
    ends = {writer, up_writer}
    if open_writers is not None:
        open_writers |= ends
    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        if open_writers is not None:
            open_writers -= ends


def relay_to(
    target: tuple[str, int], open_writers: set[asyncio.StreamWriter] | None = None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A connection handler that relays to `target`."""
    return lambda reader, writer: relay(target, reader, writer, open_writers)


@dataclass
class Relays:
    """The relay listeners and their open connections: opened once, closed together and for
    good (a close before the open means they never listen)."""

    targets: tuple[tuple[int, str, int], ...] = ()
    servers: list[asyncio.Server] = field(default_factory=list)
    open_writers: set[asyncio.StreamWriter] = field(default_factory=set)
    opened: bool = False
    closed: bool = False

    async def open(self) -> None:
        """Start listening on every relay port (once; never after `close`)."""
        if self.opened or self.closed or not self.targets:
            return
        self.opened = True
        for listen, address, port in self.targets:
            handler = relay_to((address, port), self.open_writers)
            server = await asyncio.start_server(handler, LISTEN_ADDRESS, listen)
            self.servers.append(server)
            if self.closed:  # closed while this one started
                server.close()
        if not self.closed:
            record("relays_open", message=RELAYS_OPEN)

    def close(self) -> None:
        """Stop listening and drop every relayed connection (a second call does nothing)."""
        if self.closed:
            return
        self.closed = True
        for server in self.servers:
            server.close()
        for writer in list(self.open_writers):
            with contextlib.suppress(OSError):
                writer.close()
        record("relays_closed", message=RELAYS_CLOSED)


def parse_args(argv: Sequence[str]) -> Options:
    """The policy, port and relays from the command line Gantry builds."""
    parser = argparse.ArgumentParser(description="Gantry's egress proxy")
    parser.add_argument("--port", type=int, default=LISTEN_PORT)
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--method", action="append", default=[])
    parser.add_argument("--map", action="append", default=[], help="name=address:port")
    parser.add_argument("--relay", action="append", default=[], help="port=address:port")
    parser.add_argument("--relay-held", action="store_true", help="relays listen on SIGUSR2")
    args = parser.parse_args(argv)
    mapped = {}
    for item in args.map:
        name, _, target = item.partition("=")
        address, _, port = target.rpartition(":")
        mapped[normalise_host(name)] = (address, int(port))
    relays = []
    for item in args.relay:
        listen, _, target = item.partition("=")
        address, _, port = target.rpartition(":")
        relays.append((int(listen), address, int(port)))
    methods = tuple(m.upper() for m in args.method)
    policy = Policy(tuple(args.allow), methods, mapped)
    return Options(policy, args.port, tuple(relays), args.relay_held)


def server_context(pem: str) -> ssl.SSLContext:
    """The interception leaf as a server context; read from memory (the root is read-only)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    fd = os.memfd_create("gantry-egress-leaf")
    try:
        os.write(fd, pem.encode("ascii"))
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


def upstream_context(extra_ca: str | None) -> ssl.SSLContext:
    """Verification of real hosts against the image's system CA bundle."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    if extra_ca:
        context.load_verify_locations(cadata=extra_ca)
    return context


async def serve(options: Options, tls: Tls) -> None:
    """Listen (the proxy port, unless it is 0, and every relay port unless held) until
    killed; held relays open on `OPEN_RELAYS`, and all close on `CLOSE_RELAYS`."""
    servers = []
    if options.port:
        proxy = await asyncio.start_server(
            lambda r, w: handle(options.policy, tls, r, w),
            LISTEN_ADDRESS,
            options.port,
            limit=MAX_HEAD_BYTES,
        )
        servers.append(proxy)
    relays = Relays(options.relays)
    loop = asyncio.get_running_loop()
    opening: set[asyncio.Task[None]] = set()

    def open_relays() -> None:
        task = loop.create_task(relays.open())
        opening.add(task)
        task.add_done_callback(opening.discard)

    loop.add_signal_handler(OPEN_RELAYS, open_relays)
    loop.add_signal_handler(CLOSE_RELAYS, relays.close)
    if not options.relays_held:
        await relays.open()
    record("ready", message=READY, port=options.port, relays=[r[0] for r in options.relays])
    await loop.create_future()  # `servers` and `relays` serve until the container stops


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point inside the proxy container."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    leaf = os.environ.get(TLS_ENV)
    tls = Tls(
        server_context(leaf) if leaf else None,
        upstream_context(os.environ.get(UPSTREAM_CA_ENV)),
    )
    asyncio.run(serve(options, tls))


if __name__ == "__main__":
    main()
