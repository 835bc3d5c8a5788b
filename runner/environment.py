"""Environments: a cached image resumed with maintenance, or a fresh setup snapshotted as one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from config.errors import GantryError
from config.loader import CommandPlan
from config.repo_config import CONFIG_SCHEMA_VERSION, RepoConfig
from config.secret_store import Secret
from gantry.metrics import Metrics
from runner.ca_certs import ExtraCa
from runner.cache import CACHE_REPOSITORY, CacheInputs, EnvironmentCache, cache_key
from runner.collect import SCRATCH, read_file, start_script, tar_file, tar_files
from runner.image_pull import ImagePuller
from runner.labels import KIND_AGENT, KIND_SETUP, gantry_labels
from runner.languages import (
    SELECT_PROGRAM,
    LanguageSelectionError,
    describe,
    selection_error,
    shell_command,
)
from runner.mirror import Mirrors
from runner.network import Attachment, NetworkPolicy, Networks, blocked
from runner.sandbox import (
    WORKSPACE,
    ContainerSpec,
    ExecResult,
    Limits,
    Sandbox,
    engine_call,
    running,
)
from runner.service_containers import ServiceContainers, ServiceSpec, with_no_proxy
from runner.task_ca import TASK_BUNDLE_FILE, TASK_CA_FILE, trust_archive, trust_env, trust_script
from runner.tasklog import TaskLog
from runner.workspace import checkout_script, mirror_mount, move_script

CHECKOUT_LIMIT_S = 600.0
# The snapshot of the tree the agent starts from (`git add -A` of a large tree can take a while).
START_LIMIT_S = 300.0
# The image's `gantry-select` only points symlinks at installed versions: one that runs longer
# (a hostile or broken image, a `/bin/sh` that waits) fails the setup instead of holding it.
SELECT_LIMIT_S = 60.0
DEFAULT_LIMITS = Limits()
SETUP_NETWORK = NetworkPolicy("full")
AGENT_NETWORK = NetworkPolicy("off")


class PhaseFailedError(GantryError):
    """A phase's command failed, timed out or ran out of memory."""

    def __init__(self, phase: str, command: str, result: ExecResult) -> None:
        self.phase, self.command, self.result = phase, command, result
        super().__init__(f"{phase} failed ({result.describe()}): {command}")


@dataclass(frozen=True)
class EnvironmentRequest:
    """Everything that decides a task's environment (taken from the config by `from_config`)."""

    task_id: str
    repo: str
    clone_url: str
    sha: str
    image: str
    token: str | None = None
    ref: str | None = None
    setup: tuple[str, ...] = ()
    maintenance: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    setup_limit_s: float = 1200.0
    network_setup: NetworkPolicy = SETUP_NETWORK
    network_agent: NetworkPolicy = AGENT_NETWORK
    cache_ttl_s: float = 12 * 3600.0
    languages: Mapping[str, str] = field(default_factory=dict)
    # What `auto_install` detected, for the task log (empty when setup came from elsewhere).
    setup_notes: tuple[str, ...] = ()
    # The default branch's head, the only code that ever runs with secrets. A task on any
    # other SHA resumes from the environment built there. None: `sha` is trusted itself (a
    # task on the default branch's head, or a local run on the operator's own checkout).
    trusted_sha: str | None = None
    # Containers beside the agent's on its network (databases), reached by name.
    services: tuple[ServiceSpec, ...] = ()
    # Files (name, content) put into the environment's scratch directory as it is prepared,
    # while the checkout is moved and snapshotted: the agent's task file.
    scratch_files: tuple[tuple[str, bytes], ...] = ()

    @property
    def untrusted(self) -> bool:
        """Whether the task's code is other than the trusted head's."""
        return self.trusted_sha is not None and self.trusted_sha != self.sha

    def trusted_build(self) -> EnvironmentRequest:
        """The request of the environment with secrets: the same, at the trusted head."""
        return dataclasses.replace(self, sha=self.trusted_sha or self.sha, trusted_sha=None)


def from_config(
    config: RepoConfig,
    plan: CommandPlan,
    secrets: tuple[Secret, ...],
    *,
    task_id: str,
    repo: str,
    clone_url: str,
    sha: str,
    token: str | None,
    ref: str | None = None,
    trusted_sha: str | None = None,
) -> EnvironmentRequest:
    """The environment request of a task from its repository config and command plan."""
    net = config.network
    notes = tuple(plan.detection.lines()) if plan.detection is not None else ()
    return EnvironmentRequest(
        task_id=task_id,
        repo=repo,
        clone_url=clone_url,
        sha=sha,
        image=config.image,
        token=token,
        ref=ref,
        setup=tuple(c.text for c in plan.setup),
        maintenance=tuple(c.text for c in plan.maintenance),
        env=dict(config.env),
        secrets=secrets,
        limits=Limits(
            config.resources.cpus,
            config.resources.memory,
            config.resources.pids,
            config.resources.disk,
        ),
        setup_limit_s=config.timeouts.setup.total_seconds(),
        network_setup=NetworkPolicy(net.setup, net.allow, tuple(net.methods or ())),
        network_agent=NetworkPolicy(net.agent, net.allow, tuple(net.methods or ())),
        cache_ttl_s=config.cache.ttl.total_seconds(),
        languages=dict(config.languages),
        setup_notes=notes,
        trusted_sha=trusted_sha,
    )


@dataclass
class Environment:
    """A running agent container at the task's SHA, with setup's results and no secrets."""

    sandbox: Sandbox
    attachment: Attachment
    cache_hit: bool
    image_id: str
    key: str
    timings: dict[str, float] = field(default_factory=dict)
    workspace: str = WORKSPACE
    scratch: str = SCRATCH
    services: tuple[str, ...] = ()
    # Where the relay to the model gateway is switched off (None: nothing to switch off).
    networks: Networks | None = field(default=None, repr=False)

    async def run(
        self, command: str, log: TaskLog, phase: str, limit_s: float, env: Mapping[str, str] = {}
    ) -> ExecResult:
        """Run an agent or check command in the environment."""
        return await self.sandbox.run(command, log, phase, limit_s, env=dict(env))

    @property
    def gateway_url(self) -> str | None:
        """Where the agent reaches the model gateway (None: no gateway runs)."""
        return self.attachment.gateway_url

    async def end_phase(self) -> None:
        """Stop whatever the last phase left running (the files stay)."""
        await self.sandbox.end_phase()

    async def close_gateway(self) -> None:
        """The agent phase is over: the relay to the model gateway goes, for good, with every
        connection through it (under `full` the gateway stays on the bridge, token revoked)."""
        if self.networks is not None:
            await self.networks.close_relay(self.attachment)

    async def write_file(self, path: str, data: bytes) -> None:
        """Put a file into the container (its directories are made as needed)."""
        await self.sandbox.copy_in("/", tar_file(path, data))

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        """A file from the container, refused when larger than `max_bytes`."""
        return await read_file(self.sandbox, path, max_bytes)

    async def write_scratch(self, files: tuple[tuple[str, bytes], ...]) -> None:
        """Put files (name, content) into the scratch directory, in one copy."""
        if files:
            archive = tar_files([(f"{self.scratch}/{name}", data) for name, data in files])
            await self.sandbox.copy_in("/", archive)


@dataclass(frozen=True)
class Built:
    """The image an agent container starts from, and the mirror its checkout comes from."""

    image_id: str
    key: str
    hit: bool
    mirror: Path


class Environments:
    """Prepares environments from mirrors, the cache and network policies."""

    def __init__(
        self,
        client: docker.DockerClient,
        mirrors: Mirrors,
        cache: EnvironmentCache,
        networks: Networks,
        extra_ca: ExtraCa | None = None,
        gateway: tuple[str, int] | None = None,
        metrics: Metrics | None = None,
        puller: ImagePuller | None = None,
    ) -> None:
        self.client, self.mirrors, self.cache, self.networks = client, mirrors, cache, networks
        self.metrics = metrics or Metrics()
        # Images named by the config or the server that the engine lacks are pulled first.
        self.puller = puller or ImagePuller(client)
        self.services = ServiceContainers(client, cache.owner)
        self.extra_ca = extra_ca
        # Where the agent container reaches the model gateway: (address, port) from the bridge.
        self.gateway = gateway
        # Every container trusts the extra CAs, and package managers are told where they are.
        self.ca_env: dict[str, str] = extra_ca.env() if extra_ca is not None else {}

    @contextlib.asynccontextmanager
    async def open(self, request: EnvironmentRequest, log: TaskLog) -> AsyncIterator[Environment]:
        """An environment for the task, torn down (container, proxy, network) afterwards."""
        environment = await self.prepare(request, log)
        try:
            yield environment
        finally:
            await self.release(environment)

    async def prepare(self, request: EnvironmentRequest, log: TaskLog) -> Environment:
        """Fetch, find or build the trusted image, start the agent container, run maintenance;
        the model gateway's relay (if any) listens only once maintenance is over.

        Setup (with secrets) only ever runs at the trusted head; an untrusted SHA is reached
        by moving the checkout in the agent container, which is never committed."""
        log.add_secrets(s.value.get_secret_value() for s in request.secrets)
        timings: dict[str, float] = {}
        started = time.monotonic()
        for image in self._images(request):
            await self.puller.ensure(image, log)
        timings["images"] = time.monotonic() - started
        # The agent's network (and its proxy) gets ready while the image is found or built.
        # Its gateway relay is held while maintenance may run: it opens after.
        attaching = asyncio.ensure_future(
            self.networks.attach(
                request.network_agent, request.task_id, request.repo, gateway=self.gateway,
                services=bool(request.services), wait=False,
                hold_relay=bool(request.maintenance),
            )
        )  # fmt: skip
        try:
            built = await self._image(request, log, timings)
            attachment = await attaching
        except BaseException:
            await self._abandon(attaching)
            raise
        self.metrics.cache_lookup(built.hit)
        environment = await self._start_agent(request, built, log, attachment)
        # The files go in beside the checkout's exec: a copy into the container is an engine
        # round trip of its own, and nothing in the container runs from them yet.
        writing = asyncio.ensure_future(environment.write_scratch(request.scratch_files))
        try:
            if built.hit or request.untrusted:
                mark = time.monotonic()
                await self._resume(environment, request, log)
                timings["maintenance"] = time.monotonic() - mark
            else:
                await _must(environment.sandbox, start_script(), log, "environment", START_LIMIT_S)
            await writing
            await self.networks.ready(environment.attachment)
            await self.networks.open_relay(environment.attachment)
        except BaseException:
            writing.cancel()
            await asyncio.wait([writing])
            await self.release(environment)
            raise
        environment.timings = timings | {"prepare": time.monotonic() - started}
        return environment

    async def _image(
        self, request: EnvironmentRequest, log: TaskLog, timings: dict[str, float]
    ) -> Built:
        """The mirror fetched, then the trusted image found (a hit) or built."""
        started = time.monotonic()
        trusted = request.trusted_build()
        fetched = await self.mirrors.ensure(
            request.repo, request.clone_url, request.sha, request.token, request.ref
        )
        if request.untrusted:
            await self.mirrors.ensure(request.repo, request.clone_url, trusted.sha, request.token)
            log.line("setup", f"[gantry] {request.sha} is untrusted: setup runs at {trusted.sha}")
        timings["fetch"] = time.monotonic() - started
        inputs = await self._inputs(trusted)
        key = cache_key(inputs)
        image_id, hit = await self._cached_or_built(
            trusted, inputs, key, fetched.path, log, timings
        )
        return Built(image_id, key, hit, fetched.path)

    async def _abandon(self, attaching: asyncio.Future[Attachment]) -> None:
        """Take down an attachment that is no longer wanted, made or still in the making."""
        if not attaching.done():
            attaching.cancel()
        await asyncio.wait([attaching])
        if not attaching.cancelled() and attaching.exception() is None:
            await self.networks.detach(attaching.result())

    def _images(self, request: EnvironmentRequest) -> list[str]:
        """The images the task will start: its own, and the proxy's behind `off`/`limited`."""
        modes = {request.network_setup.mode, request.network_agent.mode}
        proxy = modes != {"full"} and (self.gateway is not None or "limited" in modes)
        services = [s.image for s in request.services]
        return [request.image, *services] + ([self.networks.proxy_image] if proxy else [])

    async def _cached_or_built(
        self,
        trusted: EnvironmentRequest,
        inputs: CacheInputs,
        key: str,
        mirror: Path,
        log: TaskLog,
        timings: dict[str, float],
    ) -> tuple[str, bool]:
        """The cached image of a trusted request (built once under the key's lock); a hit?"""
        image_id = await self.cache.lookup(key)
        if image_id is not None:
            return image_id, True
        async with self.cache.building(key):
            image_id = await self.cache.lookup(key)
            if image_id is not None:
                return image_id, True
            mark = time.monotonic()
            image_id = await self._build(trusted, inputs, key, mirror, log)
            timings["setup"] = time.monotonic() - mark
            return image_id, False

    async def _inputs(self, request: EnvironmentRequest) -> CacheInputs:
        """The cache inputs of a request (the base image by ID, secrets by version)."""
        image = await engine_call(lambda: self.client.images.get(request.image))
        return CacheInputs(
            repo=request.repo,
            base_image_id=str(image.id),
            setup=request.setup,
            maintenance=request.maintenance,
            env=dict(request.env),
            secret_versions={s.name: s.version for s in request.secrets},
            schema_version=CONFIG_SCHEMA_VERSION,
            languages=dict(request.languages),
            extra_ca_digest=self.extra_ca.digest if self.extra_ca is not None else "",
            owner=self.cache.owner,
        )

    async def _build(
        self, request: EnvironmentRequest, inputs: CacheInputs, key: str, mirror: Path, log: TaskLog
    ) -> str:
        """A fresh container: checkout, setup with secrets in its exec only, then a snapshot.

        Only ever called with a trusted request: the snapshot is shared with later tasks."""
        if request.untrusted:
            raise GantryError("refusing to run setup with secrets on untrusted code")
        attachment = await self.networks.attach(
            request.network_setup, request.task_id, request.repo
        )
        # No container-level env: a commit would copy it into the image, proxy address included.
        spec = ContainerSpec(
            image=request.image,
            labels=gantry_labels(request.task_id, request.repo, KIND_SETUP, self.cache.owner),
            limits=request.limits,
            network_mode=attachment.network_mode,
            mounts=(mirror_mount(mirror),),
            dns=attachment.dns,
            dns_options=attachment.dns_options,
        )
        env = {**request.env, **self.ca_env, **attachment.env, **task_trust_env(attachment)}
        secrets = {s.name: s.value.get_secret_value() for s in request.secrets}
        try:
            async with running(self.client, spec) as sandbox:
                await self._trust_extra_ca(sandbox, log)
                await _trust_task_ca(sandbox, attachment, log, "setup")
                await _must(
                    sandbox, checkout_script(request.sha), log, "checkout", CHECKOUT_LIMIT_S
                )
                await _select_languages(sandbox, request, log)
                for note in request.setup_notes:
                    log.line("setup", f"[gantry] auto_install: {note}")
                deadline = time.monotonic() + request.setup_limit_s
                for command in request.setup:
                    left = max(deadline - time.monotonic(), 0.001)
                    await _must(sandbox, command, log, "setup", left, env | secrets)
                await _forget_task_ca(sandbox, attachment, log)
                labels = self.cache.labels_for(inputs, key, request.cache_ttl_s)
                return await sandbox.commit(CACHE_REPOSITORY, key, labels)
        finally:
            await self.networks.detach(attachment)

    async def _trust_extra_ca(self, sandbox: Sandbox, log: TaskLog) -> None:
        """Add the extra CAs to the container's bundle; the snapshot keeps them."""
        if self.extra_ca is None:
            return
        await sandbox.copy_in("/", self.extra_ca.archive())
        await _must(sandbox, self.extra_ca.install_script(), log, "setup", CHECKOUT_LIMIT_S)
        log.line("setup", "[gantry] extra CA certificates trusted (GANTRY_EXTRA_CA_CERTS)")

    async def _start_agent(
        self, request: EnvironmentRequest, built: Built, log: TaskLog, attachment: Attachment
    ) -> Environment:
        """A fresh container from the image: nothing setup started is running in it. Its
        network reaches the model gateway (when one runs), whatever `network.agent` says; a
        proxy that only relays to the gateway may still be starting (`prepare` waits)."""
        network_env = with_no_proxy(attachment.env, request.services)
        spec = ContainerSpec(
            image=built.image_id,
            labels=gantry_labels(request.task_id, request.repo, KIND_AGENT, self.cache.owner),
            limits=request.limits,
            network_mode=attachment.network_mode,
            env={**request.env, **self.ca_env, **network_env, **task_trust_env(attachment)},
            mounts=(mirror_mount(built.mirror),),
            dns=attachment.dns,
            dns_options=attachment.dns_options,
            networks=attachment.extra_networks,
        )
        services: tuple[str, ...] = ()
        try:
            task = (request.task_id, request.repo)
            services = await self.services.start(
                request.services, attachment, task, log, request.untrusted
            )
            sandbox = await Sandbox.start(self.client, spec)
        except BaseException:
            await self.services.remove(services)
            await self.networks.detach(attachment)
            raise
        environment = Environment(
            sandbox, attachment, built.hit, built.image_id, built.key, services=services,
            networks=self.networks,
        )  # fmt: skip
        try:
            await _trust_task_ca(sandbox, attachment, log, "environment")
        except BaseException:
            await self.release(environment)
            raise
        return environment

    async def _resume(
        self, environment: Environment, request: EnvironmentRequest, log: TaskLog
    ) -> None:
        """Move the cached checkout to the task's SHA, run maintenance (no secrets), end what
        it left running (untrusted code must not live on to see the agent's token), then
        snapshot the tree the agent starts from: with no maintenance, in the move's exec."""
        sandbox = environment.sandbox
        if not request.maintenance:
            script = f"{move_script(request.sha)}; {start_script()}"
            await _must(sandbox, script, log, "checkout", CHECKOUT_LIMIT_S + START_LIMIT_S)
            return
        await _must(sandbox, move_script(request.sha), log, "checkout", CHECKOUT_LIMIT_S)
        deadline = time.monotonic() + request.setup_limit_s
        for command in request.maintenance:
            left = max(deadline - time.monotonic(), 0.001)
            await _must(sandbox, command, log, "maintenance", left)
        await sandbox.end_phase()
        await _must(sandbox, start_script(), log, "environment", START_LIMIT_S)

    async def blocked_attempts(self, environment: Environment) -> list[dict[str, Any]]:
        """What the egress proxy refused (nothing for `off` and `full`)."""
        return blocked(await self.networks.decisions(environment.attachment))

    async def release(self, environment: Environment) -> None:
        """Remove the agent container and its services, then its proxy and network."""
        try:
            await environment.sandbox.remove()
        finally:
            try:
                await self.services.remove(environment.services)
            finally:
                await self.networks.detach(environment.attachment)


async def _select_languages(sandbox: Sandbox, request: EnvironmentRequest, log: TaskLog) -> None:
    """Run the image's `gantry-select` before setup; an absent version fails the environment."""
    if not request.languages:
        return
    log.line("setup", f"[gantry] languages: {describe(request.languages)}")
    # Through the shell, so that an image without the program answers 127 ("not found").
    argv = ["/bin/sh", "-c", shell_command(request.languages)]
    try:
        result = await asyncio.wait_for(
            engine_call(lambda: sandbox.container.exec_run(argv, workdir="/")), SELECT_LIMIT_S
        )
    except TimeoutError:
        # The kill ends the exec (and its thread); the container goes with the failed setup.
        await sandbox.kill()
        reason = (
            f"languages: {describe(request.languages)} requested, but the language selection "
            f"(the image's {SELECT_PROGRAM}) did not finish within {SELECT_LIMIT_S:.0f}s "
            f"(image {request.image})"
        )
        log.line("setup", f"[gantry] setup failed: {reason}")
        raise LanguageSelectionError(reason) from None
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else ""
    for line in output.splitlines():
        log.line("setup", line)
    if result.exit_code != 0:
        status = result.exit_code if result.exit_code is not None else -1
        reason = selection_error(request.image, request.languages, status, output)
        log.line("setup", f"[gantry] setup failed: {reason}")
        raise LanguageSelectionError(reason)


async def _must(
    sandbox: Sandbox,
    command: str,
    log: TaskLog,
    phase: str,
    limit_s: float,
    env: Mapping[str, str] | None = None,
) -> ExecResult:
    """Run a command; anything but success raises `PhaseFailedError`."""
    result = await sandbox.run(command, log, phase, limit_s, env=env)
    if not result.ok:
        log.line(phase, f"[gantry] {phase} failed: {result.describe()}")
        raise PhaseFailedError(phase, command, result)
    return result


def task_trust_env(attachment: Attachment) -> dict[str, str]:
    """The variables that make clients trust the task's own CA (only when HTTPS is inspected)."""
    return trust_env() if attachment.ca_pem is not None else {}


async def _trust_task_ca(
    sandbox: Sandbox, attachment: Attachment, log: TaskLog, phase: str
) -> None:
    """Add the task's CA (issued for `network.methods` over HTTPS) to the container's bundle."""
    if attachment.ca_pem is None:
        return
    await sandbox.copy_in("/", trust_archive(attachment.ca_pem))
    await _must(sandbox, trust_script(), log, phase, CHECKOUT_LIMIT_S)
    log.line(phase, "[gantry] HTTPS methods are checked: this task's own CA is trusted")


async def _forget_task_ca(sandbox: Sandbox, attachment: Attachment, log: TaskLog) -> None:
    """Remove the setup task's CA before the snapshot: no later task trusts it."""
    if attachment.ca_pem is None:
        return
    await _must(sandbox, f"rm -f {TASK_CA_FILE} {TASK_BUNDLE_FILE}", log, "setup", 60.0)
