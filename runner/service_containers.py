"""Service containers: a database or a cache beside the task's container, reached by name.

Each service joins the task's own network (under `off` and `limited` the internal one whose
only way out is the gateway relay or the proxy; under `full` an internal one beside the
bridge) with its key as DNS alias, hardened like the task's container. Gantry waits until
every service is ready: its `ready` command succeeds inside it, else the image's HEALTHCHECK
says healthy, else it is running. Services go with the task (and with a sweep, by label).

Disk: a service gets the task's `resources.disk` as the size of its writable layer, like the
task's container (where the engine enforces one), and each `VOLUME` of its image is a tmpfs
of that size instead of an anonymous volume on the engine's disk: its pages count against
the service's memory, so nothing a service writes reaches the host's disk unbounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import docker
import docker.errors
from docker.types import EndpointConfig

from config.errors import GantryError
from config.repo_config import RepoConfig
from config.secret_store import Secret
from runner.disk_limit import volume_mounts
from runner.labels import KIND_SERVICE, SERVICE, gantry_labels
from runner.network import Attachment
from runner.sandbox import (
    DEFAULT_DISK,
    Limits,
    created,
    disk_plan,
    engine_call,
    hardened,
    remove_container,
)
from runner.tasklog import TaskLog

PHASE = "environment"
POLL_S = 0.5
LOG_TAIL = 20
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")
Verdict = Literal["ready", "waiting", "dead"]
# A service's last lines are shown when it fails; more never reaches the host's disk.
SERVICE_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}}
SERVICE_LIMITS = Limits(cpus=1.0, memory=1024**3, pids=256, disk=DEFAULT_DISK)


class ServiceError(GantryError):
    """A service container could not start or did not get ready in time."""


@dataclass(frozen=True)
class ServiceSpec:
    """One service of a task: what to run, what it gets, how to know it is ready."""

    name: str
    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    # Values from the secret store; withheld from tasks on untrusted code.
    secrets: Mapping[str, str] = field(default_factory=dict)
    ready: str | None = None
    ready_timeout_s: float = 60.0
    limits: Limits = SERVICE_LIMITS


def secret_names(config: RepoConfig) -> list[str]:
    """Every secret the config's services name (resolved from the store by the pipeline)."""
    return list(dict.fromkeys(n for s in config.services.values() for n in s.secrets))


def services_of(config: RepoConfig, secrets: tuple[Secret, ...] = ()) -> tuple[ServiceSpec, ...]:
    """The services of a config, with the values of the secrets each one names."""
    values = {s.name: s.value.get_secret_value() for s in secrets}
    return tuple(
        ServiceSpec(
            name=name,
            image=service.image,
            env=dict(service.env),
            secrets={n: values[n] for n in service.secrets if n in values},
            ready=service.ready,
            ready_timeout_s=service.ready_timeout.total_seconds(),
            limits=Limits(
                service.resources.cpus,
                service.resources.memory,
                service.resources.pids,
                config.resources.disk,
            ),
        )
        for name, service in config.services.items()
    )


def with_no_proxy(env: Mapping[str, str], services: tuple[ServiceSpec, ...]) -> dict[str, str]:
    """The task's variables with the services' names added to NO_PROXY (under `limited`, an
    HTTP client must reach them directly, not through the egress proxy)."""
    names = ",".join(s.name for s in services)
    if not names:
        return dict(env)
    return {k: f"{v},{names}" if k in NO_PROXY_NAMES else v for k, v in env.items()}


def service_kwargs(
    spec: ServiceSpec,
    attachment: Attachment,
    labels: Mapping[str, str],
    endpoint: EndpointConfig,
    untrusted: bool,
    disk_size: int | None = None,
    volumes: Iterable[str] = (),
) -> dict[str, Any]:
    """The docker SDK arguments of a hardened service container (pure, so tests read it).

    `disk_size`: the size storage option where the engine enforces one; `volumes`: the
    image's VOLUME paths, each a tmpfs of the service's disk limit."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "environment": dict(spec.env) | ({} if untrusted else dict(spec.secrets)),
        "labels": dict(labels),
        "hostname": spec.name,
        "network": attachment.network_mode,
        "networking_config": {attachment.network_mode: endpoint},
        "log_config": SERVICE_LOG_CONFIG,
        **hardened(spec.limits),
    }
    if attachment.dns:
        kwargs["dns"] = list(attachment.dns)
    if attachment.dns_options:
        kwargs["dns_opt"] = list(attachment.dns_options)
    if disk_size is not None:
        kwargs["storage_opt"] = {"size": str(disk_size)}
    mounts = volume_mounts(volumes, spec.limits.disk)
    if mounts:
        kwargs["mounts"] = mounts
    return kwargs


def judge(
    state: Mapping[str, Any], spec: ServiceSpec, ready_exit: int | None
) -> tuple[Verdict, str]:
    """Whether a service is ready, still starting, or gone, from its state (pure)."""
    if not state.get("Running"):
        status = state.get("Status", "?")
        return "dead", f"it is {status} (exit code {state.get('ExitCode')})"
    if spec.ready is not None:
        if ready_exit == 0:
            return "ready", f"`{spec.ready}` succeeded"
        return "waiting", f"`{spec.ready}` gave exit code {ready_exit}"
    health = state.get("Health")
    if not health:
        return "ready", "running (no ready command, no HEALTHCHECK)"
    status = str(health.get("Status"))
    if status == "healthy":
        return "ready", "its HEALTHCHECK says healthy"
    probes = health.get("Log") or [{}]
    output = str(probes[-1].get("Output") or "").strip().splitlines()[-1:]
    return "waiting", f"its HEALTHCHECK says {status}" + (f": {output[0]}" if output else "")


class ServiceContainers:
    """Starts a task's services on its network and waits until they are ready."""

    def __init__(self, client: docker.DockerClient, owner: str) -> None:
        self.client = client
        self.owner = owner

    async def start(
        self,
        services: tuple[ServiceSpec, ...],
        attachment: Attachment,
        task: tuple[str, str],
        log: TaskLog,
        untrusted: bool = False,
    ) -> tuple[str, ...]:
        """Start every service, then wait for all; nothing is left running on failure."""
        ids: list[str] = []
        try:
            for spec in services:
                ids.append(await self._create(spec, attachment, task, untrusted))
                log.line(PHASE, f"[gantry] service {spec.name} ({spec.image}) started")
                if untrusted and spec.secrets:
                    log.line(PHASE, f"[gantry] service {spec.name}: untrusted code, no secrets")
            async with asyncio.TaskGroup() as group:
                for container_id, spec in zip(ids, services, strict=True):
                    group.create_task(self._wait(container_id, spec, log))
        except BaseException as exc:
            await self.remove(tuple(ids))
            if isinstance(exc, BaseExceptionGroup):
                raise exc.exceptions[0] from None
            raise
        return tuple(ids)

    async def _create(
        self, spec: ServiceSpec, attachment: Attachment, task: tuple[str, str], untrusted: bool
    ) -> str:
        labels = gantry_labels(*task, KIND_SERVICE, self.owner) | {SERVICE: spec.name}
        endpoint = self.client.api.create_endpoint_config(aliases=[spec.name])
        try:
            disk = await disk_plan(self.client, spec.image, spec.limits)
        except docker.errors.NotFound:
            raise ServiceError(f"service {spec.name}: image {spec.image} is missing") from None
        kwargs = service_kwargs(
            spec, attachment, labels, endpoint, untrusted, disk.size, disk.volumes
        )

        def create() -> Any:
            container = self.client.containers.create(**kwargs)
            try:
                container.start()
            except docker.errors.APIError:
                container.remove(force=True, v=True)
                raise
            return container

        try:
            return str((await created(self.client, create)).id)
        except GantryError as exc:
            raise ServiceError(f"service {spec.name} ({spec.image}) did not start: {exc}") from None

    async def _wait(self, container_id: str, spec: ServiceSpec, log: TaskLog) -> None:
        """Poll until ready; a service that dies or times out fails with its last log lines."""
        started = time.monotonic()
        deadline = started + spec.ready_timeout_s
        while True:
            state = (await engine_call(lambda: self.client.api.inspect_container(container_id)))[
                "State"
            ]
            ready_exit = await self._ready_exit(container_id, spec, deadline)
            verdict, detail = judge(state, spec, ready_exit)
            if verdict == "ready":
                seconds = time.monotonic() - started
                log.line(PHASE, f"[gantry] service {spec.name} ready in {seconds:.1f}s: {detail}")
                return
            if verdict == "dead" or time.monotonic() >= deadline:
                await self._fail(container_id, spec, verdict, detail, log)
            await asyncio.sleep(POLL_S)

    async def _ready_exit(
        self, container_id: str, spec: ServiceSpec, deadline: float
    ) -> int | None:
        """The `ready` command's exit code (None: no command, or it ran out of time)."""
        if spec.ready is None:
            return None
        command = ["/bin/sh", "-c", spec.ready]
        left = max(deadline - time.monotonic(), 0.1)
        try:
            result = await asyncio.wait_for(
                engine_call(lambda: self.client.api.exec_create(container_id, command)["Id"]), left
            )
            await asyncio.wait_for(engine_call(lambda: self.client.api.exec_start(result)), left)
            info = await engine_call(lambda: self.client.api.exec_inspect(result))
        except (TimeoutError, GantryError):
            return None
        code = info.get("ExitCode")
        return int(code) if code is not None else None

    async def _fail(
        self, container_id: str, spec: ServiceSpec, verdict: Verdict, detail: str, log: TaskLog
    ) -> None:
        """Put the service's last log lines into the task log, then raise the report."""
        raw = await engine_call(lambda: self.client.api.logs(container_id, tail=LOG_TAIL))
        for line in bytes(raw).decode(errors="replace").splitlines():
            log.line(PHASE, f"[{spec.name}] {line}")
        if verdict == "dead":
            reason = f"service {spec.name} ({spec.image}) stopped before it was ready: {detail}"
        else:
            reason = (
                f"service {spec.name} ({spec.image}) did not get ready within "
                f"{spec.ready_timeout_s:.0f}s: {detail}"
            )
        log.line(PHASE, f"[gantry] {reason}")
        raise ServiceError(f"{reason} (its last log lines are in the task log)")

    async def remove(self, ids: tuple[str, ...]) -> None:
        """Force-remove service containers and their anonymous volumes (idempotent)."""
        for container_id in ids:
            await remove_container(self.client, container_id)
