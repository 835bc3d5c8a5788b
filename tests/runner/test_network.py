"""Network policies against the real engine: off, limited through the egress proxy, full."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from aiohttp import web

from runner.cache import EnvironmentCache
from runner.environment import Environments
from runner.labels import OWNER, gantry_labels
from runner.mirror import Mirrors
from runner.network import NetworkPolicy, Networks, NetworkSetupError, blocked
from runner.sandbox import ContainerSpec, Limits, running
from runner.tasklog import TaskLog
from tests.runner.conftest import Origin, Owner, request_for
from tests.support import TEST_BASE_IMAGE

PROBE = """
import socket, ssl, sys, urllib.request, urllib.error
host, port = sys.argv[1], int(sys.argv[2])

def get(url, proxies=None, method="GET"):
    handler = urllib.request.ProxyHandler(proxies)
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.build_opener(handler).open(request, timeout=5) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return str(e.code)
    except Exception as e:
        return "error"

def connect(address, port):
    try:
        socket.create_connection((address, port), timeout=3).close()
        return "connected"
    except OSError:
        return "error"

def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError:
        return "error"

def tls_with_other_name():
    try:
        address = urllib.request.getproxies()["https"].split("//")[1].split(":")
        proxy = socket.create_connection(address, timeout=5)
    except (KeyError, OSError):
        return "error"
    proxy.sendall(b"CONNECT allowed.test:443 HTTP/1.1\\r\\nHost: allowed.test:443\\r\\n\\r\\n")
    proxy.recv(1024)
    try:
        ssl.create_default_context().wrap_socket(proxy, server_hostname="evil.test")
        return "handshake"
    except (OSError, ssl.SSLError):
        return "error"

print("allowed", get("http://allowed.test/hi"))
print("denied", get("http://denied.test/hi"))
print("post", get("http://allowed.test/hi", method="POST"))
print("direct", connect(host, port))
print("unproxied", get("http://allowed.test/hi", proxies={}))
print("dns", resolve("deb.debian.org"))
print("sni", tls_with_other_name())
"""

SMALL = Limits(cpus=1.0, memory=128 * 1024**2, pids=64)


@pytest_asyncio.fixture
async def host_server() -> AsyncIterator[int]:
    """An HTTP server on every host address: stands for Gantry's webhook port, too."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0)  # noqa: S104 (containers must reach it)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


def host_gateway(client: docker.DockerClient) -> str:
    """The host's address on Docker's default bridge."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # The engine leaves Gateway out for the default bridge; it is the subnet's first address.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


async def probe(
    client: docker.DockerClient,
    networks: Networks,
    policy: NetworkPolicy,
    owner: Owner,
    log: TaskLog,
    port: int,
) -> tuple[dict[str, str], list[dict[str, object]]]:
    """Run the probe in a sandbox under a policy; its answers, and the proxy's decisions."""
    attachment = await networks.attach(policy, owner.task_id, owner.repo)
    spec = ContainerSpec(
        TEST_BASE_IMAGE,
        gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner),
        SMALL,
        network_mode=attachment.network_mode,
        env=attachment.env,
        dns=attachment.dns,
        dns_options=attachment.dns_options,
    )
    try:
        async with running(client, spec) as sandbox:
            command = f"python3 -c {shlex.quote(PROBE)} {host_gateway(client)} {port}"
            result = await sandbox.run(command, log, "agent", 90)
            assert result.ok, log.tail(20)
        decisions = await networks.decisions(attachment)
    finally:
        await networks.detach(attachment)
    answers = dict(line.split(" ", 1) for line in log.tail(7))
    return answers, decisions


async def test_off_reaches_nothing(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog, host_server: int
) -> None:
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    answers, decisions = await probe(
        docker_client, networks, NetworkPolicy("off"), owner, task_log, host_server
    )
    assert set(answers.values()) == {"error"}
    assert decisions == []


async def test_full_reaches_the_host(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog, host_server: int
) -> None:
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    answers, _ = await probe(
        docker_client, networks, NetworkPolicy("full"), owner, task_log, host_server
    )
    assert answers["direct"] == "connected"


async def test_limited_lets_only_listed_names_and_methods_through_the_proxy(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog, host_server: int
) -> None:
    mapped = {"allowed.test": f"{host_gateway(docker_client)}:{host_server}"}
    networks = Networks(docker_client, TEST_BASE_IMAGE, mapped, owner.label_owner)
    policy = NetworkPolicy("limited", allow=("allowed.test", "*.pypi.test"), methods=("GET",))
    answers, decisions = await probe(docker_client, networks, policy, owner, task_log, host_server)
    assert answers == {
        "allowed": "200 hello from /hi",
        "denied": "403",
        "post": "403",
        "direct": "error",
        "unproxied": "error",
        "dns": "error",
        "sni": "error",
    }
    refused = {(str(d["target"]), str(d["reason"])) for d in blocked(decisions)}
    assert refused == {
        ("http://denied.test/hi", "domain not allowed"),
        ("http://allowed.test/hi", "method POST not allowed"),
        ("allowed.test:443", "TLS server name 'evil.test' is not the CONNECT host"),
    }
    assert {"event": "allowed", "method": "GET", "host": "allowed.test", "port": 80} in [
        {k: d[k] for k in ("event", "method", "host", "port") if k in d} for d in decisions
    ]


FETCH = (
    'python3 -c "import urllib.request, sys; '
    "print('got', urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\" {url}"
)


async def test_setup_and_agent_each_get_their_own_policy(
    docker_client: docker.DockerClient,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    host_server: int,
    tmp_path: Path,
) -> None:
    gateway = host_gateway(docker_client)
    networks = Networks(
        docker_client, TEST_BASE_IMAGE, {"allowed.test": f"{gateway}:{host_server}"}
    )
    environments = Environments(
        docker_client,
        Mirrors(tmp_path / "data"),
        EnvironmentCache(docker_client, owner=owner.label_owner),
        networks,
    )
    request = request_for(
        owner,
        origin,
        origin.first_sha,
        setup=(FETCH.format(url=f"http://{gateway}:{host_server}/setup"),),
        network_setup=NetworkPolicy("full"),
        network_agent=NetworkPolicy("limited", allow=("allowed.test",)),
    )
    async with environments.open(request, task_log) as env:
        through_proxy = await env.run(
            FETCH.format(url="http://allowed.test/agent"), task_log, "agent", 30
        )
        direct = await env.run(
            FETCH.format(url=f"http://{gateway}:{host_server}/x"), task_log, "agent", 30
        )
        decisions = await networks.decisions(env.attachment)
    assert through_proxy.ok
    assert not direct.ok
    text = task_log.text()
    assert "[setup] got hello from /setup" in text
    assert "[agent] got hello from /agent" in text
    # The direct attempt went to the proxy (the variables are set) and was refused there.
    events = [(d["event"], d.get("host") or d.get("target")) for d in decisions]
    assert events[1:] == [
        ("allowed", "allowed.test"),
        ("blocked", f"http://{gateway}:{host_server}/x"),
    ]
    assert docker_client.networks.list(filters={"label": f"gantry.task={owner.task_id}"}) == []


async def test_a_proxy_that_exits_at_start_fails_the_attachment_and_leaves_nothing(
    docker_client: docker.DockerClient, owner: Owner
) -> None:
    # A mapping the proxy cannot parse: it exits before it says it listens.
    mapped = {"allowed.test": "192.0.2.1:not-a-port"}
    networks = Networks(docker_client, TEST_BASE_IMAGE, mapped, owner.label_owner)
    policy = NetworkPolicy("limited", allow=("allowed.test",))
    with pytest.raises(NetworkSetupError, match="exited"):
        await networks.attach(policy, owner.task_id, owner.repo)
    label = f"{OWNER}={owner.label_owner}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []
