"""The local executor (`EXECUTOR=local`): tasks run on this host, for development only.

No container, no cache, no network policy, no resource limits: the agent and every command
run as this user, in a temporary clone. Everything it does is loud about that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import GantryError
from runner.collect import start_script, too_big
from runner.environment import START_LIMIT_S, EnvironmentRequest, PhaseFailedError
from runner.mirror import Mirrors, git
from runner.patch_policy import PatchRefusedError
from runner.sandbox import ExecResult
from runner.tasklog import TaskLog

log = logging.getLogger(__name__)
WARNING = (
    "EXECUTOR=local: this task runs ON THIS HOST as this user, with no container, no network "
    "policy and no resource limits. Use it for development only."
)
# Only what commands need to find their tools; the server's own environment stays out.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SHELL", "TERM")
CHECKOUT_LIMIT_S = 600.0


@dataclass
class LocalEnvironment:
    """A temporary clone at the task's SHA, with a scratch directory beside it."""

    root: Path
    task_env: Mapping[str, str]
    # The model gateway on this host's loopback (None: no gateway runs).
    gateway_url: str | None = None

    @property
    def workspace(self) -> str:
        return str(self.root / "workspace")

    @property
    def scratch(self) -> str:
        return str(self.root / "scratch")

    async def run(
        self, command: str, log: TaskLog, phase: str, limit_s: float, env: Mapping[str, str] = {}
    ) -> ExecResult:
        """Run a shell command in the clone, its output line by line into the log."""
        return await run_local(
            command, self.workspace, log, phase, limit_s, {**self.task_env, **env}
        )

    async def end_phase(self) -> None:
        """Nothing to stop: every command ran in its own process group, killed at its end."""

    async def close_gateway(self) -> None:
        """Nothing to switch off: on the host (development only) the gateway is on loopback,
        where every local process reaches it; the revoked token is what keeps it shut."""

    async def write_file(self, path: str, data: bytes) -> None:
        target = Path(path)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, data)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return await asyncio.to_thread(read_capped, Path(path), max_bytes)


def read_capped(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes (empty when absent), never following a link, capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:  # a symlink (ELOOP) or worse: never read through it
        raise PatchRefusedError(f"{path.name} is not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PatchRefusedError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise PatchRefusedError(too_big(info.st_size, max_bytes))
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PatchRefusedError(too_big(len(data), max_bytes))
    return data


def base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}


async def run_local(
    command: str, cwd: str, log: TaskLog, phase: str, limit_s: float, env: Mapping[str, str]
) -> ExecResult:
    """`bash -c command` in its own process group, killed whole at the time limit."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=cwd, env={**base_env(), **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    async def stream() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            log.line(phase, line.decode(errors="replace").rstrip("\n"))
        await proc.wait()

    try:
        await asyncio.wait_for(stream(), limit_s)
    except TimeoutError:
        log.line(phase, f"[gantry] time limit of {limit_s:.0f}s reached; killing the command")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return ExecResult(None, True, False, time.monotonic() - started)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    # What the command left running in the background ends with it, as in a container.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return ExecResult(proc.returncode, False, False, time.monotonic() - started)


class LocalExecutor:
    """Prepares environments as temporary clones of the mirror on this host."""

    def __init__(self, mirrors: Mirrors, work_dir: Path, gateway_url: str | None = None) -> None:
        self.mirrors, self.work_dir, self.gateway_url = mirrors, work_dir, gateway_url

    async def prepare(self, request: EnvironmentRequest, tasklog: TaskLog) -> LocalEnvironment:
        """Clone at the SHA, then run setup with its secrets (and, uncached, every time)."""
        log.warning(WARNING)
        tasklog.line("environment", f"[gantry] {WARNING}")
        if request.services:  # no engine to run them on: say so rather than run without them
            names = ", ".join(s.name for s in request.services)
            raise GantryError(f"services ({names}) need the docker executor (GANTRY_EXECUTOR)")
        tasklog.add_secrets(s.value.get_secret_value() for s in request.secrets)
        fetched = await self.mirrors.ensure(
            request.repo, request.clone_url, request.sha, request.token, request.ref
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="task-", dir=self.work_dir))
        env = LocalEnvironment(root, dict(request.env), self.gateway_url)
        try:
            await git(None, ["clone", "--quiet", "--shared", str(fetched.path), env.workspace],
                      {}, None)  # fmt: skip
            checkout = [f"--work-tree={env.workspace}", "checkout", "--quiet", "--detach"]
            await git(Path(env.workspace) / ".git", [*checkout, request.sha], {}, None)
            secrets = {s.name: s.value.get_secret_value() for s in request.secrets}
            if request.untrusted:  # secrets only ever run with the default branch's code
                tasklog.line("setup", f"[gantry] {request.sha} is untrusted: setup without secrets")
                secrets = {}
            for command in request.setup:
                result = await env.run(command, tasklog, "setup", request.setup_limit_s, secrets)
                if not result.ok:
                    raise PhaseFailedError("setup", command, result)
            for name, data in request.scratch_files:
                await env.write_file(f"{env.scratch}/{name}", data)
            script = start_script(env.workspace, env.scratch)
            result = await env.run(script, tasklog, "environment", START_LIMIT_S)
            if not result.ok:
                raise PhaseFailedError("environment", script, result)
        except BaseException:
            await self.release(env)
            raise
        return env

    async def release(self, environment: LocalEnvironment) -> None:
        await asyncio.to_thread(shutil.rmtree, environment.root, True)

    async def blocked_attempts(self, environment: LocalEnvironment) -> list[dict[str, Any]]:
        return []
