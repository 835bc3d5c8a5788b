"""The Docker sandbox: hardened containers, and commands streamed into the task log."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import shlex
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.images import Image
from docker.types import Mount
from requests.exceptions import RequestException

from config.errors import GantryError
from runner import idle
from runner.disk_limit import FIX as DISK_FIX
from runner.disk_limit import (
    DiskLimitSupport,
    DiskProbeError,
    SupportCache,
    image_volumes,
    storage_size,
    volume_mounts,
)
from runner.ptrace_scope import confined, engine_scope
from runner.task_count import host_count
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
DEFAULT_DISK = 10 * 1024**3
# After a failed command: can the container still write 1 MiB into its own layer (`/` is always
# the layer) and into each tmpfs that stands in for an image VOLUME? Exit status 0 when it can,
# 1 when it cannot. Each write goes to a fresh name made by `mktemp` (O_EXCL): the agent cannot
# plant a FIFO or a link there. An image without `mktemp` (or `head`) cannot be probed safely,
# nor a path its user may not write to: those answer "unknown" (the task log says so).
DISK_PROBE_TEMPLATE = ".gantry-probe.XXXXXX"
PROBE_NO_TOOLS = 3
PROBE_NOT_WRITABLE = 4
PROBE_UNKNOWN: dict[int | None, str] = {
    PROBE_NO_TOOLS: "the image has no `mktemp` or `head`",
    PROBE_NOT_WRITABLE: "the container's user may not write there",
}
# Gantry's own commands in a container (the disk probe, the OOM counter) end within this, or
# the container is restarted: what the agent left there (a FIFO, a `cat` of its own) cannot
# hold a phase past its end.
INTERNAL_LIMIT_S = 15.0
# One answer per engine: `Sandbox.start` is handed only a client, and the answer belongs to it.
DISK_SUPPORT = SupportCache()
IDLE_VOLUMES = idle.IdleVolumes()
# Gantry's idle program is trusted once the engine sees it asleep (see runner/idle.py): it is
# given this long to get there after a (re)start, or the phase ends with a restart.
IDLE_SETTLE_S = 1.0
IDLE_POLL_S = 0.01
UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
# Nothing reads a task's container's own output (commands stream theirs through their execs),
# while anything in it can write to its PID 1's stdout: a kept log would fill the host's disk.
SANDBOX_LOG_CONFIG = {"type": "none"}

T = TypeVar("T")


class SandboxError(GantryError):
    """The engine refused or failed a sandbox operation."""


@dataclass(frozen=True)
class Limits:
    """CPU, memory (swap equal to it: no swap), PID and disk limits of a container.

    `disk` bounds what the container writes into its own filesystem (None: no limit); engines
    that cannot enforce it run the container without it, and say so in the task log. Each
    VOLUME path of the image is a tmpfs of that size (bounded on every engine).
    """

    cpus: float = 2.0
    memory: int = 4 * 1024**3
    pids: int = 512
    disk: int | None = DEFAULT_DISK


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
    # Joined before the start, besides `network_mode` (the bridge beside a services network).
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecResult:
    """How a command ended: its exit code, whether we or the kernel killed it, or the disk filled.

    `disk_full`: it failed with the container's disk limit (`disk_limit` bytes) reached.
    """

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    seconds: float
    disk_full: bool = False
    disk_limit: int | None = None

    @property
    def ok(self) -> bool:
        """Exited 0 on its own."""
        return self.exit_code == 0 and not (self.timed_out or self.oom_killed or self.disk_full)

    def describe(self) -> str:
        """A one-line verdict for reports."""
        if self.timed_out:
            return f"killed at its timeout after {self.seconds:.0f}s"
        if self.oom_killed:
            return "killed: out of memory"
        if self.disk_full:
            size = human_bytes(self.disk_limit) if self.disk_limit is not None else "its size"
            return f"failed: disk limit of {size} reached (exit code {self.exit_code})"
        return f"exit code {self.exit_code}"


def human_bytes(count: int) -> str:
    """A byte count in the largest binary unit that keeps it whole or one decimal (10 GiB)."""
    value, unit = float(count), UNITS[0]
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def hardened(limits: Limits) -> dict[str, Any]:
    """The docker SDK arguments every container of a task shares: no privileges, only the
    package managers' capabilities, no new privileges, its own IPC, and its limits."""
    return {
        "init": True,
        "detach": True,
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(CAP_ADD),
        "security_opt": list(SECURITY_OPT),
        "nano_cpus": int(limits.cpus * 1e9),
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "pids_limit": limits.pids,
        "ipc_mode": "private",
    }


def create_kwargs(
    spec: ContainerSpec,
    disk_size: int | None = None,
    volumes: Sequence[Mount] = (),
    idle_volume: str | None = None,
) -> dict[str, Any]:
    """The docker SDK arguments of a hardened container (pure, so tests read it).

    `disk_size`: the size storage option, when the engine enforces one (see `disk_size_for`);
    `volumes`: the tmpfs mounts in place of the image's VOLUMEs (see `volume_mounts`);
    `idle_volume`: the engine's volume of Gantry's idle program, its PID 1 (see runner/idle.py);
    None: docker-init and the image's `sleep`.
    """
    kwargs: dict[str, Any] = {
        "image": spec.image,
        # Our own entrypoint: an image's ENTRYPOINT (and its CMD with it) never runs here.
        "entrypoint": [IDLE_COMMAND[0]],
        "command": list(IDLE_COMMAND[1:]),
        "labels": dict(spec.labels),
        "environment": dict(spec.env),
        "working_dir": WORKSPACE,
        "hostname": HOSTNAME,
        "network_mode": spec.network_mode,
        "mounts": [*spec.mounts, *volumes],
        "log_config": SANDBOX_LOG_CONFIG,
        **hardened(spec.limits),
    }
    if idle_volume is not None:
        kwargs.update(idle.container_kwargs())
        kwargs["mounts"] = [*kwargs["mounts"], idle.mount(idle_volume)]
    if spec.dns:
        kwargs["dns"] = list(spec.dns)
    if spec.dns_options:
        kwargs["dns_opt"] = list(spec.dns_options)
    if spec.name:
        kwargs["name"] = spec.name
    if disk_size is not None:
        kwargs["storage_opt"] = {"size": str(disk_size)}
    return kwargs


def disk_size_for(limits: Limits, support: DiskLimitSupport | None, image_bytes: int) -> int | None:
    """The size storage option of a container, or None when there is no limit to enforce."""
    if limits.disk is None or support is None:
        return None
    return storage_size(limits.disk, support, image_bytes)


def disk_probe(paths: Iterable[str]) -> str | None:
    """The shell command that fails when any of `paths` has no room for 1 MiB (None: none)."""
    dirs = " ".join(shlex.quote(path.rstrip("/") or "/") for path in paths)
    if not dirs:
        return None
    return (
        f"for p in mktemp head; do command -v $p >/dev/null 2>&1 || exit {PROBE_NO_TOOLS}; done; "
        f"for d in {dirs}; do "
        f'[ -w "$d" ] || exit {PROBE_NOT_WRITABLE}; '
        f'f=$(mktemp -p "$d" {DISK_PROBE_TEMPLATE} 2>/dev/null) || exit 1; '
        'head -c 1048576 /dev/zero > "$f" 2>/dev/null; s=$?; rm -f "$f"; '
        '[ "$s" -eq 0 ] || exit 1; done'
    )


def probed_paths(
    limits: Limits, support: DiskLimitSupport | None, volumes: Iterable[str]
) -> tuple[str, ...]:
    """Where a full disk limit shows: the layer where the engine enforces its size, and each
    VOLUME's tmpfs (sized on every engine) when there is a limit."""
    if limits.disk is None:
        return ()
    layer = ("/",) if support is not None and support.enforced else ()
    return (*layer, *volumes)


def mount_targets(spec: ContainerSpec) -> frozenset[str]:
    """Where the spec's own mounts go (an image VOLUME there is theirs, not a tmpfs)."""
    return frozenset(str(m.get("Target", "")).rstrip("/") for m in spec.mounts)


def unenforced_note(limits: Limits, support: DiskLimitSupport | None) -> str | None:
    """The task log's warning when a disk limit is asked for but not enforced."""
    if limits.disk is None or support is None or support.enforced:
        return None
    return (
        f"[gantry] the disk limit of {human_bytes(limits.disk)} is NOT enforced on this "
        f"engine ({support.detail}); fix: {DISK_FIX}"
    )


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

    def __init__(
        self,
        client: docker.DockerClient,
        container: Container,
        limits: Limits = Limits(disk=None),
        disk: DiskLimitSupport | None = None,
        volumes: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.container = container
        self.id: str = container.id or ""
        self.limits = limits
        self.disk = disk
        self._oom_seen = 0
        # The engine's `State.OOMKilled` as last seen: it turns on when a restart ends a run
        # with an OOM kill in it, and stays on for the container's life (see `_engine_oom_news`).
        self._oom_flag = False
        # Whether the restart of a check that got no answer ended a run the OOM killer struck.
        self._oom_at_restart = False
        self.internal_limit_s = INTERNAL_LIMIT_S
        self._disk_note = unenforced_note(limits, disk)
        self._disk_probe = disk_probe(probed_paths(limits, disk, volumes))
        self.volumes = volumes
        # The host PIDs of the idle processes, read before the first command after a (re)start.
        self._idle: frozenset[str] | None = None
        # Whether nothing in the container can take the idle processes over: its PID 1 is
        # Gantry's idle program (runner/idle.py), or the engine's kernel confines ptrace
        # (runner/ptrace_scope.py). Only then may a phase end unrestarted.
        self.idle_guarded = False
        self.ptrace_confined = False

    @classmethod
    async def start(cls, client: docker.DockerClient, spec: ContainerSpec) -> Sandbox:
        """Create and start a container from a spec, with its disk limit where enforced and a
        tmpfs of that size at each of its image's VOLUME paths."""
        check_spec(spec)
        disk = await disk_plan(client, spec.image, spec.limits, mount_targets(spec))
        mounts = volume_mounts(disk.volumes, spec.limits.disk)
        idle_volume = await idle_volume_of(client, spec.image)
        kwargs = create_kwargs(spec, disk.size, mounts, idle_volume)

        def create() -> Container:
            container = client.containers.create(**kwargs)
            try:
                for network in spec.networks:
                    client.networks.get(network).connect(container)
                container.start()
            except (docker.errors.APIError, RequestException):
                container.remove(force=True, v=True)
                raise
            return container

        container = await created(client, create)
        sandbox = cls(client, container, spec.limits, disk.support, disk.volumes)
        sandbox.idle_guarded = idle_volume is not None
        sandbox.ptrace_confined = not sandbox.idle_guarded and confined(engine_scope(client))
        return sandbox

    async def run(
        self,
        command: str,
        log: TaskLog,
        phase: str,
        limit_s: float,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run a shell command, streaming its output into the log; at its time limit, end
        everything in the sandbox (a restart: the files stay, and the phase's next command
        runs)."""
        started = time.monotonic()
        if self._idle is None:
            self._idle = await self._idle_processes()
        if self._disk_note is not None:
            log.line(phase, self._disk_note)
            self._disk_note = None
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
            log.line(
                phase,
                f"[gantry] time limit of {limit_s:.0f}s reached; killing everything in the "
                f"sandbox{self._emptied()}",
            )
            await self._end_everything()
        await asyncio.to_thread(thread.join)
        exit_code = None if timed_out else await self._exit_code(exec_id)
        oom = exit_code == SIGKILL_STATUS and await self._oom_happened(log, phase)
        full = exit_code not in (0, None) and not oom and await self._disk_full(log, phase)
        if full:
            log.line(phase, f"[gantry] disk limit of {human_bytes(self.limits.disk or 0)} reached")
        seconds = time.monotonic() - started
        limit = self.limits.disk if full else None
        return ExecResult(exit_code, timed_out, oom, seconds, full, limit)

    async def _disk_full(self, log: TaskLog, phase: str) -> bool:
        """Whether the container's disk limit (its layer's where enforced, its VOLUMEs'
        tmpfs) leaves no room for 1 MiB more (unknown: False)."""
        probe = self._disk_probe
        if probe is None:
            return False
        result = await self._internal([*SHELL, probe], log, phase)
        code = None if result is None else result.exit_code
        why = "the check got no answer" if result is None else PROBE_UNKNOWN.get(code)
        if why is not None:
            # Unknown is not "not full": a user whose command failed from a full disk is told.
            log.line(
                phase,
                f"[gantry] whether the disk limit was reached could not be checked ({why}); "
                "a full disk may be why the command failed",
            )
            return False
        return code not in (0, None)

    async def _internal(self, argv: list[str], log: TaskLog, phase: str) -> Any | None:
        """One of Gantry's own commands in the container, its `exec_run` result; None when the
        engine failed it or it did not end within `internal_limit_s` (the container is then
        restarted, which ends the exec and everything the phase left)."""
        try:
            return await asyncio.wait_for(
                engine_call(lambda: self.container.exec_run(argv)), self.internal_limit_s
            )
        except SandboxError:
            return None
        except TimeoutError:
            limit = f"{self.internal_limit_s:.0f}s"
            log.line(
                phase,
                f"[gantry] a check of the sandbox got no answer within {limit}; restarting it"
                f"{self._emptied()}",
            )
            self._oom_at_restart = await self._restart()
            return None

    async def end_phase(self) -> None:
        """Kill every process the last phase left running; the files stay, a fresh idle starts.

        The engine restarts the container (SIGKILL to its init takes the whole PID namespace),
        so nothing in the container has to cooperate: no shell of its own, no `kill` across
        users (CAP_KILL is dropped), no race with processes that fork while being killed.
        When the engine's process list (read on the host) holds exactly the idle processes seen
        before the first command, the kernel's count of tasks in the container's cgroup is
        theirs alone, and nothing in the container could take those over (PID 1 is Gantry's
        undumpable idle program, runner/idle.py; or the engine's kernel confines ptrace,
        runner/ptrace_scope.py), nothing is left to kill and the restart (about 0.3 s) is
        skipped. The list alone is not enough: the engine reads the cgroup's PIDs, then runs `ps`
        for them, so a process that forks and exits in a loop is never in both and never shows.
        The count is one number the kernel keeps: a process is in it from its fork on.
        """
        guarded = self.idle_guarded or self.ptrace_confined
        idle = self._idle
        if (
            guarded
            and idle
            and await self._processes() == idle
            and await self._task_count() == len(idle)
        ):
            return
        await self._restart()

    def _emptied(self) -> str:
        """What a restart in the middle of a phase takes besides its processes: the image's
        VOLUME paths are tmpfs, empty again after it (said in the task log)."""
        if not self.volumes:
            return ""
        return f" (which empties {', '.join(self.volumes)}: the image's VOLUME paths)"

    async def _end_everything(self) -> None:
        """Kill every process in the container but leave it running: a kill alone stopped it,
        and the phase's next command (the next check) failed with the engine's "not running".
        When the engine cannot restart it, it is killed all the same."""
        try:
            await self._restart()
        except SandboxError:
            await self.kill()

    async def _restart(self) -> bool:
        """Restart the container through the engine: every process in it dies, files stay.
        Whether the engine says the OOM killer struck in the run it ended (and not before)."""
        self._idle = None
        await engine_call(lambda: self.client.api.restart(self.id, timeout=0))
        self._oom_seen = 0  # the restarted container's memory cgroup counts from zero
        return await self._engine_oom_news()

    async def _idle_processes(self) -> frozenset[str] | None:
        """The processes idle before a phase's first command. Gantry's idle program counts
        only once the engine sees it asleep, undumpable by then (None: it is not, within
        `IDLE_SETTLE_S`; the phase will end with a restart)."""
        if not self.idle_guarded:
            return await self._processes()
        deadline = time.monotonic() + IDLE_SETTLE_S
        while True:
            rows = await self._process_rows("pid,stat,comm")
            if rows is not None and idle.trusted(rows):
                return frozenset(row[0] for row in rows)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(IDLE_POLL_S)

    async def _task_count(self) -> int | None:
        """The kernel's count of tasks (threads included) in the container's pids cgroup: read
        on this host when it is the engine's, else as the engine reports it (which can take a
        second: runner/task_count.py); None: neither can say."""
        for pid in sorted(self._idle or ()):
            counted = host_count(pid, self.id)
            if counted is not None:
                return counted
        try:
            stats = await engine_call(
                lambda: self.client.api.stats(self.id, stream=False, one_shot=True)
            )
        except (SandboxError, docker.errors.NotFound):
            return None
        current = (stats.get("pids_stats") or {}).get("current")
        return current if isinstance(current, int) else None

    async def _processes(self) -> frozenset[str] | None:
        """The host PIDs of every process in the container (None: the engine cannot say)."""
        rows = await self._process_rows("pid")
        return None if rows is None else frozenset(row[0] for row in rows)

    async def _process_rows(self, columns: str) -> list[list[str]] | None:
        """The engine's `ps -o <columns>` of the container (None: the engine cannot say)."""
        try:
            top = await engine_call(lambda: self.client.api.top(self.id, ps_args=f"-o {columns}"))
        except (SandboxError, docker.errors.NotFound):
            return None
        return [[str(cell) for cell in row] for row in top.get("Processes") or []]

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

    async def _oom_happened(self, log: TaskLog, phase: str) -> bool:
        """Whether the kernel's OOM killer struck in this container since we last looked."""
        self._oom_at_restart = False
        result = await self._internal([*SHELL, f"cat {OOM_FILES} 2>/dev/null"], log, phase)
        if result is None:
            if self._oom_at_restart or await self._engine_oom_news():
                return True
            # Unknown is not "no": a kill that may have been the OOM killer's says so.
            log.line(
                phase,
                "[gantry] whether the command ran out of memory could not be checked "
                "(the check got no answer); exit code 137 is a kill, often the OOM killer's",
            )
            return False
        output = result.output if isinstance(result.output, bytes) else b""
        kills = parse_oom_kills(output.decode(errors="replace"))
        happened, self._oom_seen = kills > self._oom_seen, kills
        return await self._engine_oom_news() or happened

    async def _engine_oom_news(self) -> bool:
        """Whether the engine's `State.OOMKilled` turned on since we last looked. Only the
        change counts: the flag stays on after the restart that set it, and every later kill
        (exit 137: a `kill -9`, a test runner's SIGKILL) was "out of memory" with it."""
        state = await self.oom_killed_state()
        news, self._oom_flag = state and not self._oom_flag, state
        return news

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


async def created(client: docker.DockerClient, create: Callable[[], Container]) -> Container:
    """A container made in a thread; cancelled meanwhile, the thread still finishes, so the
    container it made is removed before the cancellation goes on (none is left running)."""
    making = asyncio.ensure_future(engine_call(create))
    try:
        return await asyncio.shield(making)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            orphan = await making
            await remove_container(client, orphan.id or "")
        raise


async def idle_volume_of(client: docker.DockerClient, image: str) -> str | None:
    """The engine's idle volume, filled on first use, and again when it is gone (a `docker
    volume prune` between tasks); None: the engine's machine is one the idle program is not
    written for."""
    return await engine_call(lambda: IDLE_VOLUMES.volume(client, image))


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


async def disk_support(client: docker.DockerClient, image: str) -> DiskLimitSupport:
    """Whether the engine enforces disk limits: asked once per client, probed with `image`."""
    try:
        return await engine_call(lambda: DISK_SUPPORT.get(client, image))
    except (DiskProbeError, SandboxError) as exc:
        return DiskLimitSupport(False, str(exc))


def image_bytes(image: Image) -> int:
    """An inspected image's size, which btrfs counts against a container's limit."""
    return int(image.attrs.get("Size") or 0)


@dataclass(frozen=True)
class DiskPlan:
    """How a container of an image gets its disk limit: the engine's support (None: no limit
    asked for), the size storage option (None: not enforced), the image's VOLUME paths."""

    support: DiskLimitSupport | None
    size: int | None
    volumes: tuple[str, ...]


async def disk_plan(
    client: docker.DockerClient, image: str, limits: Limits, taken: frozenset[str] = frozenset()
) -> DiskPlan:
    """The disk limit of a container of `image` (a task's or a service's), decided alike for
    both; `taken`: mount targets whose VOLUME paths are the caller's, not a tmpfs."""
    found = await engine_call(lambda: client.images.get(image))
    support = await disk_support(client, image) if limits.disk is not None else None
    size = image_bytes(found) if support is not None and support.counts_image else 0
    return DiskPlan(support, disk_size_for(limits, support, size), image_volumes(found, taken))


async def engine_call(call: Callable[[], T]) -> T:
    """Run a blocking engine call in a thread; failures but `NotFound` become `SandboxError`."""
    try:
        return await asyncio.to_thread(call)
    except docker.errors.NotFound:
        raise
    except (docker.errors.DockerException, RequestException) as exc:
        raise SandboxError(str(exc)) from exc
