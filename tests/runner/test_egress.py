"""The egress proxy's decisions are pure: domain matching, request parsing, TLS server names."""

from __future__ import annotations

import ssl

import pytest

from runner.egress import (
    Policy,
    Refused,
    check,
    host_allowed,
    parse_args,
    parse_head,
    plain_target,
    server_name,
)
from runner.network import NetworkPolicy, parse_decisions, proxy_command, proxy_env


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
    command = proxy_command(limited, {"a.test": "10.0.0.1:8080"})
    assert command[:2] == ["python3", "-c"]
    assert parse_args(command[3:]) == (policy, 3128)


def test_proxy_env_and_decisions() -> None:
    env = proxy_env("10.1.2.3")
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://10.1.2.3:3128"
    logs = '{"event": "blocked", "target": "x"}\nnoise\n{"event": "ready"}\n[1]\n'
    assert parse_decisions(logs) == [{"event": "blocked", "target": "x"}, {"event": "ready"}]
