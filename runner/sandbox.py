"""The Docker sandbox: hardened containers, and commands streamed into the task log."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import Mount
from requests.exceptions import RequestException

from config.errors import GantryError
from runner.tasklog import LineSplitter, TaskLog

WORKSPACE = "/workspace"
SHELL = ("/bin/sh", "-c")
IDLE_COMMAND = ("sleep", "infinity")
HOSTNAME = "gantry"
# Package managers run as root inside the sandbox and need exactly these:
# CHOWN/FOWNER/FSETID to unpack files with their owners and modes (dpkg, npm, pip wheels),
# DAC_OVERRIDE to write root-owned trees the way root normally can, and SETUID/SETGID because
# apt drops to its `_apt` user to download. Everything else (NET_RAW, MKNOD, SYS_CHROOT,
# NET_BIND_SERVICE, AUDIT_WRITE, KILL across users, ...) stays dropped.
CAP_ADD = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID")
SECURITY_OPT = ("no-new-privileges",)
SIGKILL_STATUS = 137
STREAMS = ("stdout", "stderr")
OOM_FILES = "/sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"
OOM_RE = re.compile(r"^oom_kill (\d+)$", re.MULTILINE)

T = TypeVar("T")


class SandboxError(GantryError):
    """The engine refused or failed a sandbox operation."""


@dataclass(frozen=True)
class Limits:
    """CPU, memory (swap equal to it: no swap) and PID limits of a container."""

    cpus: float = 2.0
    memory: int = 4 * 1024**3
    pids: int = 512


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one sandbox container."""

    image: str
    labels: Mapping[str, str]
    limits: Limits = Limits()
    network_mode: str = "none"
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    dns: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class ExecResult:
    """How a command ended: its exit code, and whether we killed it or the kernel did."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """Exited 0 on its own."""
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed

    def describe(self) -> str:
        """A one-line verdict for reports."""
        if self.timed_out:
            return f"killed at its timeout after {self.seconds:.0f}s"
        if self.oom_killed:
            return "killed: out of memory"
        return f"exit code {self.exit_code}"


def create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """The docker SDK arguments of a hardened container (pure, so tests read it)."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        # Our own entrypoint: an image's ENTRYPOINT (and its CMD with it) never runs here.
        "entrypoint": [IDLE_COMMAND[0]],
        "command": list(IDLE_COMMAND[1:]),
        "labels": dict(spec.labels),
        "environment": dict(spec.env),
        "working_dir": WORKSPACE,
        "hostname": HOSTNAME,
        "init": True,
        "detach": True,
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(CAP_ADD),
        "security_opt": list(SECURITY_OPT),
        "nano_cpus": int(spec.limits.cpus * 1e9),
        "mem_limit": spec.limits.memory,
        "memswap_limit": spec.limits.memory,
        "pids_limit": spec.limits.pids,
        "network_mode": spec.network_mode,
        "mounts": list(spec.mounts),
        "ipc_mode": "private",
    }
    if spec.dns:
        kwargs["dns"] = list(spec.dns)
    if spec.dns_options:
        kwargs["dns_opt"] = list(spec.dns_options)
    if spec.name:
        kwargs["name"] = spec.name
    return kwargs


def check_spec(spec: ContainerSpec) -> None:
    """Refuse a spec that would hand the host to the container."""
    for mount in spec.mounts:
        if "docker.sock" in str(mount.get("Source", "")):
            raise SandboxError("the Docker socket is never mounted into a sandbox")


def parse_oom_kills(text: str) -> int:
    """The cgroup's `oom_kill` counter (v1 memory.oom_control or v2 memory.events)."""
    return sum(int(n) for n in OOM_RE.findall(text))


class Sandbox:
    """One running container; every blocking engine call runs in a thread."""

    def __init__(self, client: docker.DockerClient, container: Container) -> None:
        self.client = client
        self.container = container
        self.id: str = container.id or ""
        self._oom_seen = 0

    @classmethod
    async def start(cls, client: docker.DockerClient, spec: ContainerSpec) -> Sandbox:
        """Create and start a container from a spec."""
        check_spec(spec)
        kwargs = create_kwargs(spec)

        def create() -> Container:
            container = client.containers.create(**kwargs)
            try:
                container.start()
            except (docker.errors.APIError, RequestException):
                container.remove(force=True)
                raise
            return container

        return cls(client, await engine_call(create))

    async def run(
        self,
        command: str,
        log: TaskLog,
        phase: str,
        limit_s: float,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run a shell command, streaming its output into the log; kill the sandbox at timeout."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        exec_id = await engine_call(
            lambda: self.client.api.exec_create(
                self.id, [*SHELL, command], environment=dict(env or {}), workdir=WORKSPACE
            )["Id"]
        )

        def emit(line: str | None) -> None:
            loop.call_soon_threadsafe(lines.put_nowait, line)

        thread = threading.Thread(
            target=self._stream, args=(exec_id, log, emit), name="gantry-exec", daemon=True
        )
        thread.start()
        timed_out = not await _drain(lines, log, phase, limit_s)
        if timed_out:
            log.line(phase, f"[gantry] time limit of {limit_s:.0f}s reached; killing the sandbox")
            await self.kill()
        await asyncio.to_thread(thread.join)
        exit_code = None if timed_out else await self._exit_code(exec_id)
        oom = exit_code == SIGKILL_STATUS and await self._oom_happened()
        return ExecResult(exit_code, timed_out, oom, time.monotonic() - started)

    def _stream(self, exec_id: str, log: TaskLog, emit: Callable[[str | None], None]) -> None:
        """Thread body: decode the exec's output and hand over whole lines."""
        # One splitter per stream: a partial stdout line must not swallow a stderr line.
        splitters = [LineSplitter(log.redactor) for _ in STREAMS]
        try:
            for stream, text in _chunks(self.client, exec_id):
                for line in splitters[stream].feed(text):
                    emit(line)
        except (docker.errors.APIError, RequestException, OSError):
            pass  # the container went away under the stream (timeout kill): nothing to read
        for splitter in splitters:
            for line in splitter.flush():
                emit(line)
        emit(None)

    async def _exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code, None while it runs."""
        info = await engine_call(lambda: self.client.api.exec_inspect(exec_id))
        code = info.get("ExitCode")
        return int(code) if code is not None else None

    async def _oom_happened(self) -> bool:
        """Whether the kernel's OOM killer struck in this container since we last looked."""
        try:
            result = await engine_call(
                lambda: self.container.exec_run([*SHELL, f"cat {OOM_FILES} 2>/dev/null"])
            )
        except SandboxError:
            return await self.oom_killed_state()
        output = result.output if isinstance(result.output, bytes) else b""
        kills = parse_oom_kills(output.decode(errors="replace"))
        happened, self._oom_seen = kills > self._oom_seen, kills
        return happened or await self.oom_killed_state()

    async def oom_killed_state(self) -> bool:
        """The engine's own `State.OOMKilled`."""
        with contextlib.suppress(SandboxError):
            await engine_call(self.container.reload)
        return bool(self.container.attrs.get("State", {}).get("OOMKilled"))

    async def copy_in(self, path: str, archive: bytes) -> None:
        """Unpack a tar archive into the container at `path`."""
        await engine_call(lambda: self.container.put_archive(path, archive))

    async def commit(self, repository: str, tag: str, labels: Mapping[str, str]) -> str:
        """Snapshot the filesystem as an image carrying these labels; returns its id."""
        conf = {"Labels": dict(labels), "Cmd": list(IDLE_COMMAND)}
        image = await engine_call(
            lambda: self.container.commit(repository=repository, tag=tag, conf=conf)
        )
        return str(image.id)

    async def kill(self) -> None:
        """Stop everything in the container now."""
        with contextlib.suppress(SandboxError):
            await engine_call(lambda: self.container.kill())

    async def remove(self) -> None:
        """Force-remove the container (idempotent)."""
        await remove_container(self.client, self.id)


@contextlib.asynccontextmanager
async def running(client: docker.DockerClient, spec: ContainerSpec) -> AsyncIterator[Sandbox]:
    """A started sandbox that is force-removed on the way out, whatever happened inside."""
    sandbox = await Sandbox.start(client, spec)
    try:
        yield sandbox
    finally:
        await asyncio.shield(sandbox.remove())


async def remove_container(client: docker.DockerClient, container_id: str) -> None:
    """Force-remove a container, ignoring one that is already gone."""

    def remove() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container_id, force=True, v=True)

    try:
        await engine_call(remove)
    except SandboxError as exc:
        if "removal of container" not in str(exc) or "already in progress" not in str(exc):
            raise


async def _drain(
    lines: asyncio.Queue[str | None], log: TaskLog, phase: str, limit_s: float
) -> bool:
    """Write lines to the log until the stream ends (True) or the timeout passes (False)."""

    async def consume() -> None:
        while (line := await lines.get()) is not None:
            log.line(phase, line)

    try:
        await asyncio.wait_for(consume(), limit_s)
    except TimeoutError:
        return False
    return True


def _chunks(client: docker.DockerClient, exec_id: str) -> Iterator[tuple[int, str]]:
    """The exec's output as (stream, text) pieces: 0 stdout, 1 stderr, decoded incrementally."""
    decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in STREAMS]
    for frame in client.api.exec_start(exec_id, stream=True, demux=True):
        for stream, data in enumerate(frame):
            if data:
                yield stream, decoders[stream].decode(data)
    for stream, decoder in enumerate(decoders):
        yield stream, decoder.decode(b"", final=True)


async def engine_call(call: Callable[[], T]) -> T:
    """Run a blocking engine call in a thread; failures but `NotFound` become `SandboxError`."""
    try:
        return await asyncio.to_thread(call)
    except docker.errors.NotFound:
        raise
    except (docker.errors.DockerException, RequestException) as exc:
        raise SandboxError(str(exc)) from exc
