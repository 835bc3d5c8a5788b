"""Service containers: reachable by name under every network policy, waited on until ready,
hardened, confined to the task's network, and gone with the task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest
import pytest_asyncio
from docker.types import EndpointConfig
from pydantic import SecretStr

from config.repo_config import parse_repo_config
from config.secret_store import Secret, secret_version
from runner.cleanup import sweep
from runner.environment import Environment, EnvironmentRequest, Environments
from runner.image_pull import ImagePuller
from runner.labels import KIND, KIND_SERVICE, SERVICE, TASK
from runner.network import Attachment, Mode, NetworkPolicy, bridge_gateway_address
from runner.service_containers import (
    ServiceError,
    ServiceSpec,
    judge,
    secret_names,
    service_kwargs,
    services_of,
    with_no_proxy,
)
from runner.tasklog import TaskLog
from tests.registry import LocalRegistry, forget, local_registry
from tests.runner.conftest import Origin, Owner, request_for
from tests.runner.test_sandbox import flood, host_log_bytes
from tests.service_support import PORT, TALK, service_image, talk

__all__ = ["local_registry", "service_image"]

READY = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {PORT}), 1)'"

CONFIG = """\
resources: {disk: 2g}
services:
  db:
    image: gantry-test-service:latest
    env: {GREETING: hello}
    secrets: [DB_TOKEN]
    ready: "true"
    ready_timeout: 30s
    resources: {cpus: 0.5, memory: 128m, pids: 64}
"""


def test_the_config_becomes_service_specs_with_their_secrets() -> None:
    config = parse_repo_config(CONFIG).config
    assert secret_names(config) == ["DB_TOKEN"]
    value = SecretStr("s3cret")
    [spec] = services_of(config, (Secret("DB_TOKEN", value, secret_version("DB_TOKEN", value)),))
    assert (spec.name, spec.image, spec.ready, spec.ready_timeout_s) == (
        "db",
        "gantry-test-service:latest",
        "true",
        30.0,
    )
    assert spec.env == {"GREETING": "hello"}
    assert spec.secrets == {"DB_TOKEN": "s3cret"}
    assert (spec.limits.cpus, spec.limits.memory, spec.limits.pids) == (0.5, 128 * 1024**2, 64)
    assert spec.limits.disk == 2 * 1024**3  # the task's resources.disk


def test_a_service_container_is_hardened_and_named_on_the_task_network() -> None:
    spec = ServiceSpec("db", "img", {"A": "1"}, {"TOKEN": "s3cret"})
    attachment = Attachment("gantry-net", dns=("10.0.0.254",), dns_options=("attempts:1",))
    endpoint = EndpointConfig("1.41", aliases=["db"])
    kwargs = service_kwargs(spec, attachment, {"l": "1"}, endpoint, untrusted=False)
    assert kwargs["privileged"] is False
    assert kwargs["cap_drop"] == ["ALL"]
    assert "no-new-privileges" in kwargs["security_opt"]
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == spec.limits.memory
    assert kwargs["pids_limit"] == spec.limits.pids
    assert kwargs["network"] == "gantry-net"
    assert kwargs["networking_config"] == {"gantry-net": endpoint}
    assert kwargs["dns"] == ["10.0.0.254"]
    assert kwargs["environment"] == {"A": "1", "TOKEN": "s3cret"}
    assert "volumes" not in kwargs
    assert kwargs["log_config"]["config"] == {"max-size": "1m", "max-file": "1"}
    assert "/var/run/docker.sock" not in repr(kwargs)
    untrusted = service_kwargs(spec, attachment, {}, endpoint, untrusted=True)
    assert untrusted["environment"] == {"A": "1"}


def test_readiness_follows_the_ready_command_then_the_healthcheck() -> None:
    running = {"Running": True, "Status": "running"}
    with_ready = ServiceSpec("db", "img", ready="pg_isready")
    assert judge(running, with_ready, 0)[0] == "ready"
    assert judge(running, with_ready, 2) == ("waiting", "`pg_isready` gave exit code 2")
    plain = ServiceSpec("db", "img")
    health = {"Status": "starting", "Log": [{"Output": "refused\n"}]}
    assert judge(running | {"Health": health}, plain, None) == (
        "waiting",
        "its HEALTHCHECK says starting: refused",
    )
    assert judge(running | {"Health": {"Status": "healthy"}}, plain, None)[0] == "ready"
    assert judge(running, plain, None)[0] == "ready"
    gone = {"Running": False, "Status": "exited", "ExitCode": 3}
    assert judge(gone, with_ready, 0) == ("dead", "it is exited (exit code 3)")


def test_service_names_bypass_the_egress_proxy() -> None:
    env = {"HTTP_PROXY": "http://p:3128", "NO_PROXY": "localhost", "no_proxy": "localhost"}
    services = (ServiceSpec("db", "i"), ServiceSpec("cache", "i"))
    assert with_no_proxy(env, services) == {
        "HTTP_PROXY": "http://p:3128",
        "NO_PROXY": "localhost,db,cache",
        "no_proxy": "localhost,db,cache",
    }
    assert with_no_proxy(env, ()) == env


def service_containers(client: docker.DockerClient, owner: Owner) -> list[Any]:
    """The test task's service containers that still exist."""
    filters: dict[str, str | list[str] | bool] = {
        "label": [f"{TASK}={owner.task_id}", f"{KIND}={KIND_SERVICE}"]
    }
    return list(client.containers.list(all=True, filters=filters))


@dataclass
class Stage:
    """The engine, the test's environments, its repository and task, and the service image."""

    client: docker.DockerClient
    environments: Environments
    origin: Origin
    owner: Owner
    image: str
    log: TaskLog

    def request(self, *services: ServiceSpec, **changes: Any) -> EnvironmentRequest:
        return request_for(
            self.owner, self.origin, self.origin.first_sha, services=services, **changes
        )

    def services_left(self) -> list[Any]:
        return service_containers(self.client, self.owner)


@pytest.fixture
def stage(
    docker_client: docker.DockerClient,
    environments: Environments,
    origin: Origin,
    owner: Owner,
    service_image: str,
    task_log: TaskLog,
) -> Stage:
    return Stage(docker_client, environments, origin, owner, service_image, task_log)


async def run_in(env: Environment, command: str, task_log: TaskLog) -> str:
    """Run a command in the agent container; its last output line."""
    await env.write_file("/tmp/talk.py", TALK.encode())
    result = await env.run(command, task_log, "checks", 60.0)
    assert result.ok, task_log.text()
    return task_log.tail(1)[0]


@pytest.mark.parametrize("mode", ["off", "limited", "full"])
async def test_a_service_is_reached_by_name_under_every_policy_and_goes_with_the_task(
    stage: Stage,
    mode: Mode,
) -> None:
    # Under `full` the image's HEALTHCHECK decides; elsewhere a ready command does.
    ready = None if mode == "full" else READY
    spec = ServiceSpec("db", stage.image, {"GREETING": mode, "START_DELAY": "1"}, ready=ready)
    request = stage.request(spec, network_agent=NetworkPolicy(mode))
    env = await stage.environments.prepare(request, stage.log)
    try:
        assert await run_in(env, talk("db", "PING"), stage.log) == f"PONG {mode}"
        [container] = stage.services_left()
        assert container.labels[SERVICE] == "db"
        assert container.attrs["HostConfig"]["Privileged"] is False
        assert container.attrs["HostConfig"]["PidsLimit"] == spec.limits.pids
    finally:
        await stage.environments.release(env)
    text = stage.log.text()
    assert "[gantry] service db ready in" in text
    assert ("HEALTHCHECK says healthy" in text) == (mode == "full")
    assert stage.services_left() == []


async def test_a_service_that_never_gets_ready_fails_the_environment_clearly(
    stage: Stage,
) -> None:
    spec = ServiceSpec("db", stage.image, {"NEVER_READY": "1"}, ready_timeout_s=3.0)
    with pytest.raises(ServiceError) as info:
        await stage.environments.prepare(stage.request(spec), stage.log)
    message = str(info.value)
    assert message.startswith(f"service db ({stage.image}) did not get ready within 3s")
    assert "HEALTHCHECK says starting" in message
    assert "[db] this service never gets ready" in stage.log.text()
    assert stage.services_left() == []
    task: dict[str, str | list[str] | bool] = {"label": f"{TASK}={stage.owner.task_id}"}
    assert stage.client.containers.list(all=True, filters=task) == []  # nor the agent's


async def test_a_service_that_exits_is_reported_with_its_exit_code(
    stage: Stage,
) -> None:
    spec = ServiceSpec("db", stage.image, {"PORT": "not-a-port"}, ready_timeout_s=30.0)
    with pytest.raises(ServiceError, match=r"stopped before it was ready: it is exited \(exit"):
        await stage.environments.prepare(stage.request(spec), stage.log)
    assert "ValueError" in stage.log.text()  # the service's own last lines


@pytest_asyncio.fixture
async def host_listener() -> AsyncIterator[int]:
    """A TCP port on every host address, which a container on the plain bridge can reach."""
    server = await asyncio.start_server(lambda r, w: w.close(), "0.0.0.0", 0)  # noqa: S104
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def test_a_service_is_no_way_out_under_off(
    stage: Stage,
    host_listener: int,
    containers: Any,
) -> None:
    host = bridge_gateway_address(stage.client)
    # The control: from the ordinary bridge, the host's port answers.
    probe = containers(
        [
            "python3",
            "-c",
            f"import socket; socket.create_connection(('{host}', {host_listener}), 3)",
        ]
    )
    assert probe.wait(timeout=30)["StatusCode"] == 0
    env = await stage.environments.prepare(stage.request(ServiceSpec("db", stage.image)), stage.log)
    try:
        # The agent asks the service to open the host's port, and to look up a name for it.
        answer = await run_in(env, talk("db", "FETCH", host, str(host_listener)), stage.log)
        assert answer.startswith("CLOSED"), answer
        answer = await run_in(env, talk("db", "RESOLVE", "example.com"), stage.log)
        assert answer.startswith("UNRESOLVED"), answer
    finally:
        await stage.environments.release(env)


async def test_a_crash_left_service_is_swept_with_its_task(
    stage: Stage,
) -> None:
    env = await stage.environments.prepare(stage.request(ServiceSpec("db", stage.image)), stage.log)
    assert len(stage.services_left()) == 1
    # As after a crash: the task is not running, nothing released its environment.
    report = await sweep(stage.client, [], stage.environments.cache)
    assert report.containers >= 2  # the agent's and the service's
    assert report.networks >= 1
    assert stage.services_left() == []
    await stage.environments.release(env)  # idempotent: already gone


async def test_a_service_image_the_host_lacks_is_pulled_first(
    stage: Stage, local_registry: LocalRegistry
) -> None:
    # The service image, known to the engine only by a name in the local registry.
    reference = local_registry.image("service")
    stage.client.images.get(stage.image).tag(reference)
    auth = local_registry.auth()
    for event in stage.client.api.push(reference, stream=True, decode=True, auth_config=auth):
        assert "error" not in event, event
    forget(stage.client, reference)
    stage.environments.puller = ImagePuller(
        stage.client, {local_registry.host: local_registry.login}
    )
    env = await stage.environments.prepare(
        stage.request(ServiceSpec("db", reference, {"GREETING": "pulled"})), stage.log
    )
    try:
        assert await run_in(env, talk("db", "PING"), stage.log) == "PONG pulled"
    finally:
        await stage.environments.release(env)
        forget(stage.client, reference)
    assert f"[gantry] pulled {reference}" in stage.log.text()


async def test_a_services_log_on_the_hosts_disk_stays_small_and_keeps_its_last_lines(
    stage: Stage,
) -> None:
    env = await stage.environments.prepare(stage.request(ServiceSpec("db", stage.image)), stage.log)
    try:
        [container] = stage.services_left()
        command = f"{flood(32)}; echo the last line > /proc/1/fd/1"
        result = container.exec_run(["/bin/sh", "-c", command])
        assert result.exit_code == 0, result.output
        kept = host_log_bytes(stage.client, container.id)
        tail = stage.client.api.logs(container.id, tail=1)
    finally:
        await stage.environments.release(env)
    assert kept <= 2 * 1024**2
    assert tail == b"the last line\n"
