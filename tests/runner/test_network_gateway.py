"""Against the real engine: the gateway relay under every mode, the DNS sinkhole, HTTPS methods.

Judged by outcomes: what the container got back, and which host listeners heard anything.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from aiohttp import web

from runner.labels import gantry_labels
from runner.network import Attachment, NetworkPolicy, Networks, bridge_gateway_address
from runner.sandbox import ContainerSpec, Limits, running
from runner.task_ca import TaskTls, issue_task_tls, trust_archive, trust_env, trust_script
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner
from tests.support import TEST_BASE_IMAGE

SMALL = Limits(cpus=1.0, memory=128 * 1024**2, pids=64)
# Each argument is `name kind arg...`; each answer is one line `name result`.
PROBE = r"""
import os, socket, sys, time, urllib.request, urllib.error

def get(url, method="GET"):
    request = urllib.request.Request(url, method=method, data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return str(e.code)
    except Exception:
        return "error"

def connect(address, port):
    try:
        socket.create_connection((address, int(port)), timeout=3).close()
        return "connected"
    except OSError:
        return "error"

def resolve(name):
    started = time.monotonic()
    try:
        socket.getaddrinfo(name, 80)
        return "resolved"
    except OSError:
        return f"error {time.monotonic() - started:.1f}"

def pipelined(url):
    proxy = os.environ["HTTP_PROXY"].split("//")[1].split(":")
    sock = socket.create_connection((proxy[0], int(proxy[1])), timeout=5)
    host = url.split("/")[2]
    sock.sendall(
        f"GET {url}/first HTTP/1.1\r\nHost: {host}\r\n\r\n"
        f"POST {url}/second HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\nhi".encode()
    )
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data.split(b"\r\n")[0].decode()

def env(name):
    return os.environ.get(name, "unset")

KINDS = {"get": get, "connect": connect, "resolve": resolve, "pipelined": pipelined, "env": env}
for check in sys.argv[1:]:
    name, kind, *args = check.split(" ")
    print(name, KINDS[kind](*args), flush=True)
"""


@dataclass
class Listener:
    """An HTTP server on every host address that records the paths it was asked for."""

    port: int = 0
    paths: list[str] = field(default_factory=list)


async def _listen(name: str, context: ssl.SSLContext | None = None) -> AsyncIterator[Listener]:
    """Start a recording server on every address; stop it after the test."""
    listener = Listener()

    async def answer(request: web.Request) -> web.Response:
        listener.paths.append(f"{request.method} {request.path}")
        return web.Response(text=f"{name} {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0, ssl_context=context)  # noqa: S104 (containers)
    await site.start()
    listener.port = runner.addresses[0][1]
    yield listener
    await runner.cleanup()


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Listener]:
    """A stand-in for the model gateway on the host."""
    async for listener in _listen("gateway"):
        yield listener


@pytest_asyncio.fixture
async def other() -> AsyncIterator[Listener]:
    """Another host service that no sandbox may reach except through an allow list."""
    async for listener in _listen("other"):
        yield listener


@pytest.fixture(scope="module")
def upstream_tls() -> TaskTls:
    """A certificate for secure.test from a private CA (stands for a public one)."""
    return issue_task_tls("upstream", ["secure.test"])


@pytest_asyncio.fixture
async def secure(upstream_tls: TaskTls, tmp_path: Path) -> AsyncIterator[Listener]:
    """An HTTPS host service for secure.test."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "leaf.pem").write_bytes(upstream_tls.proxy_pem.encode())
    context.load_cert_chain(tmp_path / "leaf.pem")
    async for listener in _listen("secure", context):
        yield listener


@dataclass
class DnsListener:
    """A UDP listener on the host's bridge address, port 53, that records the queries it gets."""

    queries: list[bytes] = field(default_factory=list)
    heard: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, sock: socket.socket) -> None:
        """Record one datagram."""
        self.queries.append(sock.recv(512))
        self.heard.set()


@pytest_asyncio.fixture
async def dns_listener(docker_client: docker.DockerClient) -> AsyncIterator[DnsListener]:
    """Listen for DNS on the host side of the bridge while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bridge_gateway_address(docker_client), 53))
    sock.setblocking(False)
    listener = DnsListener()
    loop = asyncio.get_running_loop()
    loop.add_reader(sock, listener.receive, sock)
    yield listener
    loop.remove_reader(sock)
    sock.close()


async def probe(
    client: docker.DockerClient,
    attachment: Attachment,
    owner: Owner,
    log: TaskLog,
    checks: list[str],
    extra_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Run checks in a sandbox on an attachment; the answers by name."""
    spec = ContainerSpec(
        TEST_BASE_IMAGE,
        gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner),
        SMALL,
        network_mode=attachment.network_mode,
        env={**attachment.env, **(extra_env or {})},
        dns=attachment.dns,
        dns_options=attachment.dns_options,
    )
    async with running(client, spec) as sandbox:
        if attachment.ca_pem is not None:
            await sandbox.copy_in("/", trust_archive(attachment.ca_pem))
            assert (await sandbox.run(trust_script(), log, "agent", 30)).ok, log.tail(5)
        command = f"python3 -c {shlex.quote(PROBE)} " + " ".join(shlex.quote(c) for c in checks)
        result = await sandbox.run(command, log, "agent", 90)
        assert result.ok, log.tail(20)
    return dict(line.split(" ", 1) for line in log.tail(len(checks)))


def _leftovers(client: docker.DockerClient, owner: Owner) -> list[object]:
    """Containers and networks of the task still on the engine."""
    label = f"gantry.task={owner.task_id}"
    containers = client.containers.list(all=True, filters={"label": label})
    return [*containers, *client.networks.list(filters={"label": label})]


async def test_off_with_a_gateway_reaches_the_gateway_and_nothing_else(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    gateway: Listener,
    other: Listener,
    dns_listener: DnsListener,
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    policy = NetworkPolicy("off", allow=("allowed.test",))
    attachment = await networks.attach(
        policy, owner.task_id, owner.repo, gateway=(host, gateway.port)
    )
    try:
        assert attachment.gateway_url is not None
        proxy = attachment.gateway_url.rsplit(":", 1)[0]
        answers = await probe(
            docker_client,
            attachment,
            owner,
            task_log,
            [
                f"gateway get {attachment.gateway_url}/v1/responses",
                f"other connect {host} {other.port}",
                f"other_http get http://{host}:{other.port}/leak",
                f"via_proxy get {proxy}:3128/leak",
                "internet connect 1.1.1.1 443",
                "dns resolve leak-probe.example.com",
                "proxy_env env HTTP_PROXY",
            ],
        )
    finally:
        await networks.detach(attachment)
    assert answers.pop("gateway") == "200 gateway /v1/responses"
    assert answers.pop("dns").startswith("error")
    assert answers == {
        "other": "error",
        "other_http": "error",
        "via_proxy": "error",
        "internet": "error",
        "proxy_env": "unset",
    }
    assert gateway.paths == ["GET /v1/responses"]
    assert other.paths == []
    assert dns_listener.queries == []
    assert _leftovers(docker_client, owner) == []


async def test_a_relay_started_beside_the_container_answers_once_ready(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog, gateway: Listener
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    policy = NetworkPolicy("off")
    attachment = await networks.attach(
        policy, owner.task_id, owner.repo, gateway=(host, gateway.port), wait=False
    )
    try:
        assert attachment.starting is not None
        await networks.ready(attachment)
        assert attachment.gateway_url is not None
        answers = await probe(
            docker_client, attachment, owner, task_log,
            [f"gateway get {attachment.gateway_url}/v1/models", "proxy_env env HTTP_PROXY"],
        )  # fmt: skip
    finally:
        await networks.detach(attachment)
    assert answers == {"gateway": "200 gateway /v1/models", "proxy_env": "unset"}
    assert _leftovers(docker_client, owner) == []


@pytest.mark.parametrize("after", [0.0, 0.05, 0.3])
async def test_a_relay_given_up_while_it_starts_leaves_nothing(
    docker_client: docker.DockerClient, owner: Owner, gateway: Listener, after: float
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    attachment = await networks.attach(
        NetworkPolicy("off"), owner.task_id, owner.repo, gateway=(host, gateway.port), wait=False
    )
    await asyncio.sleep(after)
    await networks.detach(attachment)
    assert _leftovers(docker_client, owner) == []


async def test_limited_waits_for_its_proxy_whatever_is_asked(
    docker_client: docker.DockerClient, owner: Owner, gateway: Listener
) -> None:
    # Its address is in the container's own settings (HTTP_PROXY): it cannot start later.
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    policy = NetworkPolicy("limited", allow=("allowed.test",))
    attachment = await networks.attach(
        policy, owner.task_id, owner.repo, gateway=(host, gateway.port), wait=False
    )
    try:
        assert attachment.starting is None
        assert attachment.env["HTTP_PROXY"].startswith("http://")
    finally:
        await networks.detach(attachment)
    assert _leftovers(docker_client, owner) == []


async def test_limited_with_a_gateway_keeps_its_allow_list_and_relays(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    gateway: Listener,
    other: Listener,
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(
        docker_client, TEST_BASE_IMAGE, {"allowed.test": f"{host}:{other.port}"}, owner.label_owner
    )
    policy = NetworkPolicy("limited", allow=("allowed.test",))
    attachment = await networks.attach(
        policy, owner.task_id, owner.repo, gateway=(host, gateway.port)
    )
    try:
        answers = await probe(
            docker_client,
            attachment,
            owner,
            task_log,
            [
                f"gateway get {attachment.gateway_url}/v1/messages",
                "allowed get http://allowed.test/ok",
                "denied get http://denied.test/no",
                f"direct connect {host} {other.port}",
                "pipelined pipelined http://allowed.test",
            ],
        )
    finally:
        await networks.detach(attachment)
    assert answers == {
        "gateway": "200 gateway /v1/messages",
        "allowed": "200 other /ok",
        "denied": "403",
        "direct": "error",
        "pipelined": "HTTP/1.1 200 OK",
    }
    assert gateway.paths == ["GET /v1/messages"]
    # The POST pipelined after the allowed GET never reached the host.
    assert other.paths == ["GET /ok", "GET /first"]
    assert _leftovers(docker_client, owner) == []


async def test_full_with_a_gateway_reaches_it_on_the_bridge(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog, gateway: Listener
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    attachment = await networks.attach(
        NetworkPolicy("full"), owner.task_id, owner.repo, gateway=(host, gateway.port)
    )
    assert attachment.gateway_url == f"http://{host}:{gateway.port}"
    answers = await probe(
        docker_client, attachment, owner, task_log, [f"gateway get {attachment.gateway_url}/x"]
    )
    assert answers == {"gateway": "200 gateway /x"}


async def test_without_a_gateway_off_is_no_network_at_all(
    docker_client: docker.DockerClient, owner: Owner
) -> None:
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    attachment = await networks.attach(NetworkPolicy("off"), owner.task_id, owner.repo)
    assert (attachment.network_mode, attachment.gateway_url, attachment.proxy_id) == (
        "none",
        None,
        None,
    )


async def test_dns_from_a_limited_sandbox_fails_at_once_and_leaves_nothing(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    dns_listener: DnsListener,
) -> None:
    host = bridge_gateway_address(docker_client)
    name = f"leak-{uuid.uuid4().hex[:8]}.example.com"
    # The listener hears a sandbox that is pointed at it: silence below means something.
    control = Attachment("bridge", dns=(host,), dns_options=("timeout:1", "attempts:1"))
    await probe(docker_client, control, owner, task_log, [f"dns resolve {name}"])
    await asyncio.wait_for(dns_listener.heard.wait(), 5)
    assert any(name.split(".")[0].encode() in q for q in dns_listener.queries)
    dns_listener.queries.clear()

    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    attachment = await networks.attach(NetworkPolicy("limited"), owner.task_id, owner.repo)
    try:
        answers = await probe(docker_client, attachment, owner, task_log, [f"dns resolve {name}"])
    finally:
        await networks.detach(attachment)
    outcome, seconds = answers["dns"].split(" ")
    assert outcome == "error"
    assert float(seconds) < 2.5
    await asyncio.sleep(1)
    assert dns_listener.queries == []


async def test_https_methods_hold_through_the_per_task_ca(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    secure: Listener,
    upstream_tls: TaskTls,
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(
        docker_client,
        TEST_BASE_IMAGE,
        {"secure.test": f"{host}:{secure.port}"},
        owner.label_owner,
        upstream_ca=upstream_tls.ca_pem,
    )
    policy = NetworkPolicy("limited", allow=("secure.test",), methods=("GET",))
    attachment = await networks.attach(policy, owner.task_id, owner.repo)
    try:
        assert attachment.ca_pem is not None
        answers = await probe(
            docker_client,
            attachment,
            owner,
            task_log,
            ["get get https://secure.test/hi", "post get https://secure.test/no POST"],
            extra_env=trust_env(),
        )
        decisions = await networks.decisions(attachment)
    finally:
        await networks.detach(attachment)
    assert answers == {"get": "200 secure /hi", "post": "403"}
    assert secure.paths == ["GET /hi"]
    blocked = [(d["target"], d["reason"]) for d in decisions if d["event"] == "blocked"]
    assert blocked == [("https://secure.test/no", "method POST not allowed")]


@pytest.mark.parametrize("mode", ["off", "limited"])
async def test_a_closed_relay_answers_no_more_and_limited_keeps_its_allow_list(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    gateway: Listener,
    other: Listener,
    mode: str,
) -> None:
    host = bridge_gateway_address(docker_client)
    networks = Networks(
        docker_client, TEST_BASE_IMAGE, {"allowed.test": f"{host}:{other.port}"}, owner.label_owner
    )
    policy = NetworkPolicy(mode, allow=("allowed.test",))  # type: ignore[arg-type]
    attachment = await networks.attach(
        policy, owner.task_id, owner.repo, gateway=(host, gateway.port)
    )
    try:
        relay = attachment.gateway_url
        await networks.close_relay(attachment)
        await networks.close_relay(attachment)  # a second close is harmless
        answers = await probe(
            docker_client, attachment, owner, task_log,
            [f"gateway get {relay}/v1/responses", "allowed get http://allowed.test/ok"],
        )  # fmt: skip
    finally:
        await networks.detach(attachment)
    assert attachment.gateway_url is None
    allowed = "200 other /ok" if mode == "limited" else "error"
    assert answers == {"gateway": "error", "allowed": allowed}
    assert gateway.paths == []
    assert _leftovers(docker_client, owner) == []
