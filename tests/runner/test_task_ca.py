"""The per-task CA: its leaf passes for the allowed names only, and it vouches for nothing else."""

from __future__ import annotations

import contextlib
import ssl

import pytest
from cryptography import x509

from runner.egress import server_context
from runner.task_ca import TASK_BUNDLE_FILE, issue_task_tls, trust_env


def handshake(server: ssl.SSLContext, ca_pem: bytes, name: str) -> None:
    """A TLS handshake in memory between a client trusting only `ca_pem` and `server`."""
    client = ssl.create_default_context(cadata=ca_pem.decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=name)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, out, peer_in in ((tls_client, c_out, s_in), (tls_server, s_out, c_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
            peer_in.write(out.read())
        if tls_client.version() is not None and tls_server.version() is not None:
            return
    raise AssertionError("no handshake")


def test_the_leaf_passes_for_allowed_names_and_wildcards_only() -> None:
    tls = issue_task_tls("t1", ["pypi.org", "*.pythonhosted.org"])
    server = server_context(tls.proxy_pem)
    handshake(server, tls.ca_pem, "pypi.org")
    handshake(server, tls.ca_pem, "files.pythonhosted.org")
    for name in ("evil.com", "pythonhosted.org", "a.b.pythonhosted.org"):
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(server, tls.ca_pem, name)


def test_the_ca_is_name_constrained_and_fresh_per_task() -> None:
    one, two = issue_task_tls("t1", ["*.x.org", "y.org"]), issue_task_tls("t1", ["y.org"])
    ca = x509.load_pem_x509_certificate(one.ca_pem)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert [n.value for n in constraints.value.permitted_subtrees or []] == ["x.org", "y.org"]
    assert one.ca_pem != two.ca_pem
    assert b"PRIVATE KEY" not in one.ca_pem


def test_every_tool_is_pointed_at_the_bundle() -> None:
    env = trust_env()
    assert set(env.values()) == {TASK_BUNDLE_FILE}
    assert {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "PIP_CERT"} <= set(env)
    assert "GIT_SSL_CAINFO" in env
