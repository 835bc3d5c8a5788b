"""The egress proxy's decisions are pure: domain matching, request parsing, TLS server names."""

from __future__ import annotations

import ssl

import pytest

from runner.egress import (
    CHUNKED,
    MAX_LOG_BYTES,
    MAX_RECORDS,
    NO_BODY,
    Journal,
    Options,
    Policy,
    Refused,
    body_length,
    check,
    chunk_size,
    host_allowed,
    parse_args,
    parse_head,
    plain_target,
    server_name,
    tunnel_target,
    upstream_request,
)
from runner.network import (
    NetworkPolicy,
    blocked,
    intercepts,
    parse_decisions,
    proxy_command,
    proxy_env,
    proxy_source,
    sinkhole_address,
)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("pypi.org", True),
        ("PyPI.org.", True),
        ("evil-pypi.org", False),
        ("pypi.org.evil.com", False),
        ("files.pythonhosted.org", True),
        ("a.b.pythonhosted.org", True),
        ("pythonhosted.org", False),
        ("xpythonhosted.org", False),
    ],
)
def test_domains_match_exactly_or_by_suffix(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["pypi.org", "*.pythonhosted.org"]) is allowed


def test_requests_are_parsed_and_checked() -> None:
    head = parse_head(b"GET http://pypi.org/simple/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert (head.method, head.header("host")) == ("GET", "pypi.org")
    assert plain_target(head) == ("pypi.org", 80, "/simple/")
    policy = Policy(("pypi.org",), ("GET",))
    check(policy, "GET", "pypi.org", 80)
    with pytest.raises(Refused, match="method POST"):
        check(policy, "POST", "pypi.org", 80)
    with pytest.raises(Refused, match="port"):
        check(policy, "CONNECT", "pypi.org", 22)
    with pytest.raises(Refused, match="domain"):
        check(policy, "CONNECT", "example.com", 443)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /relative HTTP/1.1\r\nHost: pypi.org\r\n\r\n",
        b"GET http://pypi.org/ HTTP/1.1\r\nHost: evil.com\r\n\r\n",
        b"GET http://user@pypi.org/ HTTP/1.1\r\n\r\n",
        b"GET https://pypi.org/ HTTP/1.1\r\n\r\n",
    ],
)
def test_requests_that_hide_their_target_are_refused(raw: bytes) -> None:
    with pytest.raises(Refused):
        plain_target(parse_head(raw))


def test_a_garbled_request_line_is_not_http() -> None:
    with pytest.raises(ValueError, match="request line"):
        parse_head(b"\x16\x03\x01 hello\r\n\r\n")


def client_hello(name: str) -> bytes:
    """A real ClientHello from Python's TLS stack."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_server_name_is_read_from_a_client_hello() -> None:
    assert server_name(client_hello("files.pythonhosted.org")) == "files.pythonhosted.org"
    assert server_name(b"GET / HTTP/1.1\r\n") is None
    assert server_name(client_hello("pypi.org")[:20]) is None


def test_the_command_line_round_trips() -> None:
    policy = Policy(("pypi.org", "*.x.org"), ("GET", "HEAD"), {"a.test": ("10.0.0.1", 8080)})
    limited = NetworkPolicy("limited", policy.allow, policy.methods)
    command = proxy_command(limited, {"a.test": "10.0.0.1:8080"}, ("172.17.0.1", 9000))
    assert command[:2] == ["python3", "-c"]
    assert parse_args(command[3:]) == Options(policy, 3128, ((3129, "172.17.0.1", 9000),))


def test_off_gives_the_proxy_no_allow_list_whatever_the_config_lists() -> None:
    off = NetworkPolicy("off", allow=("pypi.org",), methods=("GET",))
    options = parse_args(proxy_command(off, {"a.test": "10.0.0.1:80"}, ("172.17.0.1", 9000))[3:])
    assert options.policy == Policy(())
    assert options.relays == ((3129, "172.17.0.1", 9000),)
    assert not options.relays_held
    held = parse_args(proxy_command(off, {}, ("172.17.0.1", 9000), held=True)[3:])
    assert held.relays_held


def test_the_proxy_source_fits_in_one_command_line_argument() -> None:
    # Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN); the proxy ships as one.
    assert len(proxy_source().encode()) < 128 * 1024


def test_proxy_env_and_decisions() -> None:
    env = proxy_env("10.1.2.3")
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://10.1.2.3:3128"
    assert env["NO_PROXY"].split(",")[-1] == "10.1.2.3"
    logs = '{"event": "blocked", "target": "x"}\nnoise\n{"event": "ready"}\n[1]\n'
    assert parse_decisions(logs) == [{"event": "blocked", "target": "x"}, {"event": "ready"}]


def head_of(*headers: str, line: str = "POST http://a.test/ HTTP/1.1") -> bytes:
    """A request head with these header lines."""
    return ("\r\n".join([line, *headers]) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ((), NO_BODY),
        (("Content-Length: 12",), 12),
        (("Content-Length: 5", "Content-Length: 5"), 5),
        (("Transfer-Encoding: Chunked",), CHUNKED),
    ],
)
def test_a_body_has_exactly_one_declared_length(headers: tuple[str, ...], length: int) -> None:
    assert body_length(parse_head(head_of(*headers))) == length


@pytest.mark.parametrize(
    "headers",
    [
        ("Content-Length: 5", "Content-Length: 6"),
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: gzip, chunked",),
        ("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
        ("Content-Length: -1",),
        ("Content-Length: 0x10",),
    ],
)
def test_ambiguous_bodies_are_refused(headers: tuple[str, ...]) -> None:
    with pytest.raises(Refused):
        body_length(parse_head(head_of(*headers)))


@pytest.mark.parametrize(
    "raw",
    [
        head_of("X-A: 1\nContent-Length: 40"),
        head_of("X-A: 1\rPOST /x HTTP/1.1"),
        head_of("X-A: \x00"),
        head_of(line="GET http://a.test/\n HTTP/1.1"),
        head_of(" Folded: header"),
    ],
)
def test_control_characters_that_could_split_a_request_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"request line|malformed"):
        parse_head(raw)


def test_chunk_sizes_are_hex_and_bounded() -> None:
    assert chunk_size(b"1a;ext=1\r\n") == 26
    assert chunk_size(b"0\r\n") == 0
    for bad in (b"\r\n", b"-1\r\n", b"g\r\n", b"1" * 16 + b"\r\n"):
        with pytest.raises(ValueError, match="chunk"):
            chunk_size(bad)


def test_the_upstream_request_is_written_by_the_proxy() -> None:
    head = parse_head(
        head_of(
            "Host: a.test",
            "Proxy-Authorization: x",
            "Connection: keep-alive",
            "Content-Length: 3",
            "Accept: */*",
        )
    )
    assert upstream_request(head, "a.test", "/", 3) == (
        b"POST / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\n"
    )


def test_requests_inside_a_tunnel_must_name_the_tunnel_host() -> None:
    inside = parse_head(b"GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert tunnel_target(inside, "a.test", 443) == "/x?y=1"
    absolute = parse_head(b"GET https://a.test/p HTTP/1.1\r\n\r\n")
    assert tunnel_target(absolute, "a.test", 443) == "/p"
    for raw in (
        b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\n\r\n",
        b"GET https://evil.test/ HTTP/1.1\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\n\r\n",
    ):
        with pytest.raises(Refused):
            tunnel_target(parse_head(raw), "a.test", 443)


def test_only_a_method_restriction_opens_https() -> None:
    assert intercepts(NetworkPolicy("limited", ("a.test",), ("GET",)))
    assert not intercepts(NetworkPolicy("limited", ("a.test",)))
    assert not intercepts(NetworkPolicy("off", ("a.test",), ("GET",)))


def test_dns_goes_to_the_last_address_of_the_task_network() -> None:
    assert sinkhole_address("172.25.0.0/16") == "172.25.255.254"
    assert sinkhole_address("10.213.4.0/24") == "10.213.4.254"


def test_a_flood_of_long_refusals_leaves_a_bounded_log_that_says_how_many_more() -> None:
    journal = Journal()
    lines = [journal.line("ready", {"message": "egress proxy ready"})]
    for n in range(5000):
        target = f"http://denied.test/{n}/" + '\u00ff"' * 30_000
        lines.append(journal.line("blocked", {"method": "GET", "target": target, "reason": "no"}))
        lines.append(journal.line("allowed", {"method": "GET", "host": "pypi.org", "port": 443}))
    lines.append(journal.line("relays_closed", {"message": "egress relays closed"}))
    text = "".join(f"{line}\n" for line in lines if line is not None)
    decisions = parse_decisions(text)
    refused = blocked(decisions)
    assert len(text.encode()) <= MAX_LOG_BYTES + 2048
    assert len(decisions) <= MAX_RECORDS + 16
    assert all(len(str(d.get("target", ""))) <= 257 for d in decisions)
    assert refused[0]["target"].startswith("http://denied.test/0/")
    assert decisions[-1]["event"] == "relays_closed"  # what Gantry waits for is never left out
    listed = len(refused) - 1
    assert refused[-1]["reason"].startswith("at least ")
    more = int(refused[-1]["reason"].split()[2])
    assert more <= 5000 - listed < 2 * more  # a power of two at most half below the truth
