"""The egress proxy of `limited` networks: listed domains only, optionally only some methods.

Standard library only: Gantry copies this file into the proxy container and runs it there
(`python3 egress.py --allow pypi.org --allow '*.pythonhosted.org'`). Each decision is one
JSON line on stdout, which the runner reads back for the task's report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LISTEN_PORT = 3128
# Inside its own container; only the task's internal network and Docker's bridge reach it.
LISTEN_ADDRESS = "0.0.0.0"  # noqa: S104
MAX_HEAD_BYTES = 64 * 1024
MAX_HELLO_BYTES = 16 * 1024 + 5
CONNECT_PORTS = (443,)
HTTP_PORTS = (80,)
READY = "egress proxy ready"
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)
IDLE_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 15.0
BLOCKED_RESPONSE = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"blocked by gantry egress policy: "
)
TLS_HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME_EXT = 0x0000


class Refused(Exception):
    """A request the policy does not let out; the message is the recorded reason."""


class RefusedInTunnel(Refused):
    """Refused after the tunnel was promised: the connection is simply closed."""


@dataclass(frozen=True)
class Policy:
    """Allowed domains (exact or `*.suffix`), allowed methods (empty: all), test name maps."""

    allow: tuple[str, ...]
    methods: tuple[str, ...] = ()
    mapped: dict[str, tuple[str, int]] = field(default_factory=dict)


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


def parse_head(data: bytes) -> Head:
    """Parse a request head (up to the blank line); ValueError when it is not HTTP/1."""
    lines = data.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1 request line")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("malformed header")
        headers.append((name, value.strip()))
    return Head(parts[0].upper(), parts[1], parts[2], headers)


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
    elif policy.methods and method not in policy.methods:
        raise Refused(f"method {method} not allowed")
    elif port not in HTTP_PORTS and host not in policy.mapped:
        raise Refused(f"plain HTTP only to port {HTTP_PORTS}")


def plain_target(head: Head) -> tuple[str, int, str]:
    """(host, port, origin-form path) of an absolute `http://` request; the Host must agree."""
    url = urlsplit(head.target)
    if url.scheme != "http" or not url.netloc or "@" in url.netloc:
        raise Refused("only absolute http:// URLs (and CONNECT for HTTPS) pass the proxy")
    host, port = split_host_port(url.netloc, 80)
    host_header = head.header("Host")
    if host_header is not None and split_host_port(host_header, port)[0] != host:
        raise Refused("Host header differs from the URL")
    path = url.path or "/"
    return host, port, path + (f"?{url.query}" if url.query else "")


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


def record(event: str, **fields: object) -> None:
    """One decision as a JSON line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


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


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends."""
    try:
        while data := await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S):
            writer.write(data)
            await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def tunnel(
    policy: Policy,
    host: str,
    port: int,
    first: bytes,
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Open the upstream connection, send `first`, then copy both ways."""
    address = await resolve(policy, host, port)
    up_reader, up_writer = await asyncio.wait_for(
        asyncio.open_connection(*address), CONNECT_TIMEOUT_S
    )
    up_writer.write(first)
    reader, writer = client
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def handle_connect(
    policy: Policy, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """HTTPS: the tunnel opens only if the ClientHello names the same allowed host."""
    host, port = split_host_port(head.target, 443)
    check(policy, "CONNECT", host, port)
    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    await writer.drain()
    header = await reader.readexactly(5)
    hello = header + await reader.readexactly(min(int.from_bytes(header[3:5]), MAX_HELLO_BYTES))
    sni = server_name(hello)
    if sni is None or normalise_host(sni) != host:
        raise RefusedInTunnel(f"TLS server name {sni!r} is not the CONNECT host")
    record("allowed", method="CONNECT", host=host, port=port)
    try:
        await tunnel(policy, host, port, hello, (reader, writer))
    except Refused as exc:
        raise RefusedInTunnel(str(exc)) from None


async def handle_plain(
    policy: Policy, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Plain HTTP: one request per connection, sent on with `Connection: close`."""
    host, port, path = plain_target(head)
    check(policy, head.method, host, port)
    record("allowed", method=head.method, host=host, port=port)
    lines = [f"{head.method} {path} {head.version}"]
    lines += [f"{k}: {v}" for k, v in head.headers if k.lower() not in HOP_HEADERS]
    lines.append("Connection: close")
    first = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    await tunnel(policy, host, port, first, (reader, writer))


async def handle(
    policy: Policy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One client connection: decide, record, then relay or refuse."""
    head = None
    try:
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if head.method == "CONNECT":
            await handle_connect(policy, head, reader, writer)
        else:
            await handle_plain(policy, head, reader, writer)
    except Refused as exc:
        method, target = (head.method, head.target) if head else ("", "")
        record("blocked", method=method, target=target, reason=str(exc))
        if not isinstance(exc, RefusedInTunnel):
            with contextlib.suppress(OSError):
                writer.write(BLOCKED_RESPONSE + str(exc).encode() + b"\n")
                await writer.drain()
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        record("blocked", method="", target="", reason="malformed request")
    except (OSError, TimeoutError) as exc:
        record("error", target=head.target if head else "", reason=str(exc))
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def parse_args(argv: Sequence[str]) -> tuple[Policy, int]:
    """The policy and port from the command line Gantry builds."""
    parser = argparse.ArgumentParser(description="Gantry's egress proxy")
    parser.add_argument("--port", type=int, default=LISTEN_PORT)
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--method", action="append", default=[])
    parser.add_argument("--map", action="append", default=[], help="name=address:port")
    args = parser.parse_args(argv)
    mapped = {}
    for item in args.map:
        name, _, target = item.partition("=")
        address, _, port = target.rpartition(":")
        mapped[normalise_host(name)] = (address, int(port))
    methods = tuple(m.upper() for m in args.method)
    return Policy(tuple(args.allow), methods, mapped), args.port


async def serve(policy: Policy, port: int) -> None:
    """Listen until killed."""
    server = await asyncio.start_server(
        lambda r, w: handle(policy, r, w),
        LISTEN_ADDRESS,
        port,
        limit=MAX_HEAD_BYTES,
    )
    record("ready", message=READY, port=port)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point inside the proxy container."""
    policy, port = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(serve(policy, port))


if __name__ == "__main__":
    main()
