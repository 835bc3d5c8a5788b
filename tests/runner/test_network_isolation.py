"""Against the real engine: one task's container cannot reach another task's containers.

The attack: two tasks run at once; one (any repository's) listens on a port, the other, under
`network: full`, connects to it. On Docker's default bridge (inter-container communication on)
it gets through; on Gantry's outward network it must not, while the way to the host (the
model gateway) and out stays open.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import pytest_asyncio
from aiohttp import web

from runner import network
from runner.cache import EnvironmentCache
from runner.cleanup import sweep
from runner.labels import OWNER, REPO, gantry_labels
from runner.network import (
    Attachment,
    NetworkPolicy,
    Networks,
    NetworkSetupError,
    bridge_gateway_address,
)
from runner.sandbox import ContainerSpec, Limits, Sandbox, running
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner, remove_labelled
from tests.support import TEST_BASE_IMAGE

SMALL = Limits(cpus=1.0, memory=128 * 1024**2, pids=64)
PORT = 8000
BANNER = "victim-here"
# Runs on in the background of the victim's container; every connection it takes is a line,
# and gets the banner: a connection that something else on the way accepts does not.
LISTENER = f"""
import socket
server = socket.create_server(("0.0.0.0", {PORT}))
print("listening", flush=True)
while True:
    conn, peer = server.accept()
    print("heard", peer[0], flush=True)
    conn.sendall(b"{BANNER}")
    conn.close()
"""
START_LISTENER = (
    f"python3 -c {shlex.quote(LISTENER)} >/tmp/heard 2>&1 & "
    "for i in $(seq 100); do grep -q listening /tmp/heard && exit 0; sleep 0.1; done; exit 1"
)
# Each argument is `name kind arg...`; each answer is one line `name result`.
PROBE = f"""
import socket, sys, urllib.request

def banner(address, port):
    try:
        with socket.create_connection((address, int(port)), timeout=3) as conn:
            conn.settimeout(3)
            return "reached" if conn.recv(64) == b"{BANNER}" else "error"
    except OSError:
        return "error"

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return f"{{r.status}} {{r.read().decode().strip()}}"
    except Exception:
        return "error"

KINDS = {{"banner": banner, "get": get}}
for check in sys.argv[1:]:
    name, kind, *args = check.split(" ")
    print(name, KINDS[kind](*args), flush=True)
"""


@dataclass
class HostListener:
    """An HTTP server on every host address (the model gateway's stand-in) and what it heard."""

    port: int = 0
    paths: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[HostListener]:
    """The model gateway's stand-in on the host."""
    listener = HostListener()

    async def answer(request: web.Request) -> web.Response:
        listener.paths.append(request.path)
        return web.Response(text=f"gateway {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0)  # noqa: S104 (containers must reach it)
    await site.start()
    listener.port = runner.addresses[0][1]
    yield listener
    await runner.cleanup()


@pytest.fixture
def other(docker_client: docker.DockerClient) -> Iterator[Owner]:
    """A second task, of another repository, running at the same time as `owner`'s."""
    suffix = uuid.uuid4().hex[:10]
    found = Owner(f"test-{suffix}", f"tests/other-{suffix}", f"tests-{suffix}")
    yield found
    remove_labelled(docker_client, f"{OWNER}={found.label_owner}")
    remove_labelled(docker_client, f"{REPO}={found.repo}")


Logs = Callable[[], TaskLog]


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    """Makes fresh task logs in the test's directory; closes them after."""
    made: list[TaskLog] = []

    def new() -> TaskLog:
        made.append(TaskLog(tmp_path / f"{len(made)}.log"))
        return made[-1]

    yield new
    for log in made:
        log.close()


def spec_for(owner: Owner, attachment: Attachment) -> ContainerSpec:
    """A task container on an attachment's networks, as the environment makes one."""
    return ContainerSpec(
        TEST_BASE_IMAGE,
        gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner),
        SMALL,
        network_mode=attachment.network_mode,
        env=attachment.env,
        dns=attachment.dns,
        dns_options=attachment.dns_options,
        networks=attachment.extra_networks,
    )


def addresses(client: docker.DockerClient, container_id: str) -> list[str]:
    """The container's address on each network it is on."""
    found = client.api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    return [n["IPAddress"] for n in found.values() if n.get("IPAddress")]


async def probe(
    client: docker.DockerClient,
    owner: Owner,
    attachment: Attachment,
    checks: list[str],
    logs: Logs,
) -> dict[str, str]:
    """Run the probe in a task container on an attachment; its answer to each check."""
    log = logs()
    async with running(client, spec_for(owner, attachment)) as sandbox:
        command = f"python3 -c {shlex.quote(PROBE)} " + " ".join(shlex.quote(c) for c in checks)
        result = await sandbox.run(command, log, "agent", 90)
        assert result.ok, log.tail(20)
    return dict(line.split(" ", 1) for line in log.tail(len(checks)))


async def heard(sandbox: Sandbox, logs: Logs) -> list[str]:
    """The connections the victim's listener took."""
    log = logs()
    assert (await sandbox.run("cat /tmp/heard", log, "agent", 30)).ok
    return [line for line in log.tail(50) if line.startswith("heard")]


async def attack(
    client: docker.DockerClient,
    victim: Owner,
    victim_attachment: Attachment,
    attacker: Owner,
    attacker_attachment: Attachment,
    gateway: HostListener,
    logs: Logs,
) -> tuple[dict[str, str], list[str]]:
    """The victim's container listens; the attacker's, at the same time, connects to each of
    its addresses, and asks the model gateway on the host. What the attacker got, and what
    the victim heard."""
    log = logs()
    async with running(client, spec_for(victim, victim_attachment)) as victim_box:
        assert (await victim_box.run(START_LISTENER, log, "agent", 30)).ok, log.tail(5)
        targets = addresses(client, victim_box.id)
        assert targets
        checks = [f"peer{i} banner {address} {PORT}" for i, address in enumerate(targets)]
        host = bridge_gateway_address(client)
        checks.append(f"gateway get http://{host}:{gateway.port}/v1/models")
        answers = await probe(client, attacker, attacker_attachment, checks, logs)
        return answers, await heard(victim_box, logs)


@pytest.mark.parametrize("services", [False, True])
async def test_a_full_container_cannot_reach_another_tasks_full_container(
    docker_client: docker.DockerClient,
    owner: Owner,
    other: Owner,
    gateway: HostListener,
    logs: Logs,
    services: bool,
) -> None:
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    full = NetworkPolicy("full")
    victim = await networks.attach(full, other.task_id, other.repo, services=services)
    attacker = await networks.attach(full, owner.task_id, owner.repo)
    try:
        answers, victim_heard = await attack(
            docker_client, other, victim, owner, attacker, gateway, logs
        )
    finally:
        await networks.detach(attacker)
        await networks.detach(victim)
    assert answers.pop("gateway") == "200 gateway /v1/models"
    assert set(answers.values()) == {"error"}
    assert victim_heard == []
    assert gateway.paths == ["/v1/models"]


async def test_on_dockers_default_bridge_the_same_attack_gets_through(
    docker_client: docker.DockerClient,
    owner: Owner,
    other: Owner,
    gateway: HostListener,
    logs: Logs,
) -> None:
    # Where `full` used to put task containers: the probe above does see an open port there.
    bridge = Attachment("bridge")
    answers, victim_heard = await attack(docker_client, other, bridge, owner, bridge, gateway, logs)
    assert answers == {"peer0": "reached", "gateway": "200 gateway /v1/models"}
    assert len(victim_heard) == 1


async def test_a_full_container_cannot_reach_another_tasks_egress_proxy(
    docker_client: docker.DockerClient,
    owner: Owner,
    other: Owner,
    gateway: HostListener,
    logs: Logs,
) -> None:
    # The other task's proxy (its allow list, and its relay to the gateway) faces outward too.
    host = bridge_gateway_address(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    limited = NetworkPolicy("limited", allow=("allowed.test",))
    victim = await networks.attach(limited, other.task_id, other.repo, gateway=(host, gateway.port))
    attacker = await networks.attach(
        NetworkPolicy("full"), owner.task_id, owner.repo, gateway=(host, gateway.port)
    )
    try:
        assert victim.proxy_id is not None
        targets = addresses(docker_client, victim.proxy_id)
        assert len(targets) == 2  # the task's internal network and the outward one
        # Its proxy port and its relay to the gateway, on each of its addresses.
        checks = [
            f"{kind}{i} get http://{address}:{port}/stolen"
            for i, address in enumerate(targets)
            for kind, port in (("proxy", 3128), ("relay", 3129))
        ]
        gateway_check = f"gateway get {attacker.gateway_url}/v1/x"
        answers = await probe(docker_client, owner, attacker, [*checks, gateway_check], logs)
        # The victim's own container still gets through its proxy to the gateway.
        mine = await probe(
            docker_client, other, victim, [f"gateway get {victim.gateway_url}/v1/y"], logs
        )
        decisions = await networks.decisions(victim)
    finally:
        await networks.detach(attacker)
        await networks.detach(victim)
    assert answers["gateway"] == "200 gateway /v1/x"
    assert mine == {"gateway": "200 gateway /v1/y"}
    # Neither the relay nor the proxy port took a request from the other task.
    assert gateway.paths == ["/v1/x", "/v1/y"]
    assert [d for d in decisions if d["event"] in ("allowed", "blocked", "error")] == []


@pytest.fixture
def outward_name(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A test's own outward network name (the engine's real one may be in use by others)."""
    name = f"gantry-outward-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(network, "OUTWARD", name)
    monkeypatch.setattr(network, "OUTWARD_INTERFACE", f"gtest-{name[-8:]}")
    yield name
    for found in docker_client.networks.list(names=[name]):
        if found.name == name:
            found.remove()


def named(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    """The engine's networks of exactly that name."""
    return [n for n in client.api.networks(names=[name]) if n["Name"] == name]


async def test_the_outward_network_outlives_task_cleanup_and_comes_back_after_a_prune(
    docker_client: docker.DockerClient,
    owner: Owner,
    outward_name: str,
    gateway: HostListener,
    logs: Logs,
) -> None:
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    attachment = await networks.attach(NetworkPolicy("full"), owner.task_id, owner.repo)
    await networks.detach(attachment)
    await sweep(docker_client, [], EnvironmentCache(docker_client, owner=owner.label_owner))
    [made] = named(docker_client, outward_name)
    assert attachment.network_mode == made["Id"]
    assert made["Options"][network.ICC_OPTION] == "false"
    assert made["Options"][network.INTERFACE_OPTION] == network.OUTWARD_INTERFACE

    docker_client.api.remove_network(made["Id"])  # what `docker network prune` does to it
    assert named(docker_client, outward_name) == []
    attachment = await networks.attach(
        NetworkPolicy("full"),
        owner.task_id,
        owner.repo,
        gateway=(bridge_gateway_address(docker_client), gateway.port),
    )
    try:
        answers = await probe(
            docker_client, owner, attachment, [f"gateway get {attachment.gateway_url}/again"], logs
        )
    finally:
        await networks.detach(attachment)
    assert answers == {"gateway": "200 gateway /again"}
    [again] = named(docker_client, outward_name)
    assert again["Options"][network.ICC_OPTION] == "false"


async def test_a_network_of_that_name_with_containers_talking_is_never_used(
    docker_client: docker.DockerClient, owner: Owner, outward_name: str
) -> None:
    labels = {"gantry.managed": "1", "gantry.kind": "network", OWNER: owner.label_owner}
    docker_client.networks.create(outward_name, driver="bridge", labels=labels)
    with pytest.raises(NetworkSetupError, match="enable_icc=false"):
        network.outward_network(docker_client)
    networks = Networks(docker_client, TEST_BASE_IMAGE, owner=owner.label_owner)
    with pytest.raises(NetworkSetupError):
        await networks.attach(NetworkPolicy("full"), owner.task_id, owner.repo)
    with pytest.raises(NetworkSetupError):
        await networks.attach(NetworkPolicy("limited"), owner.task_id, owner.repo)
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{OWNER}={owner.label_owner}"})
        == []
    )
