"""Every git process on the host: safe flags, a minimal environment, resource limits.

The server's own environment holds the App's private key and the webhook secret, so a git
child gets only what this module builds; global and system git config are ignored, and the
work on a container's patch runs under `prlimit` so no estimate can be wrong enough to eat
the host's memory or disk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from config.errors import GantryError
from runner import child_process, locked_temp

GIT_TIMEOUT_S = 600.0
MAX_ERROR_CHARS = 2000
# Whatever a repository or a patch brings along, host git runs none of it.
SAFE_FLAGS = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "commit.gpgsign=false",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.excludesFile=/dev/null",
    "-c", "core.protectNTFS=true",
    "-c", "core.protectHFS=true",
    "-c", "protocol.file.allow=always",
)  # fmt: skip
# Under an address-space limit, pack files are mapped in small windows instead of 1 GiB ones.
BOUNDED_PACK_FLAGS = ("-c", "core.packedGitWindowSize=32m", "-c", "core.packedGitLimit=256m")
KILLED_BY = {signal.SIGXFSZ: "the file size limit", signal.SIGKILL: "a kill (memory?)"}
# Each git runs in an empty home, `$TMPDIR/gantry-git-*/home`, locked while it runs
# (`locked_temp`): what a worker killed with `kill -9` left is swept at the next start.
HOME_PREFIX = "gantry-git-"
HOME_DIR = "home"


class HostGitError(GantryError):
    """A host git command failed, timed out or hit a resource limit."""


@dataclass(frozen=True)
class Limits:
    """What one git process may use: address space, the size of any file it writes, time."""

    memory_bytes: int | None = None
    file_bytes: int | None = None
    seconds: float = GIT_TIMEOUT_S


# Fetches from GitHub: bounded in time only (a large repository needs large packs).
FETCH = Limits()
# Work on a container's patch, in scratch space: the expanded size was checked before, and
# these hold if that check is ever wrong.
PATCH_WORK = Limits(memory_bytes=768 * 1024**2, file_bytes=256 * 1024**2, seconds=300.0)


def child_env(home: str, path: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a git child: nothing inherited but PATH."""
    return {
        "PATH": path,
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CEILING_DIRECTORIES": str(Path(home).parent),
        **extra,
    }


def limit_prefix(limits: Limits, prlimit: str) -> list[str]:
    """`prlimit` in front of git (it sets the limits on itself, then execs git)."""
    if limits.memory_bytes is None and limits.file_bytes is None:
        return []
    prefix = [prlimit, "--core=0"]
    if limits.memory_bytes is not None:
        prefix.append(f"--as={limits.memory_bytes}")
    if limits.file_bytes is not None:
        prefix.append(f"--fsize={limits.file_bytes}")
    return [*prefix, "--"]


def command(args: Sequence[str], git_dir: Path | None, limits: Limits, prlimit: str) -> list[str]:
    """The full argv of one host git call."""
    git = ["git", *SAFE_FLAGS]
    if limits.memory_bytes is not None:
        git.extend(BOUNDED_PACK_FLAGS)
    if git_dir is not None:
        git.append(f"--git-dir={git_dir}")
    return [*limit_prefix(limits, prlimit), *git, *args]


def verb(args: Sequence[str]) -> str:
    """The git subcommand, for messages."""
    return next((a for a in args if not a.startswith("-")), "git")


def failure(args: Sequence[str], code: int, stderr: bytes, secret: str | None) -> str:
    """Why a git call failed, in words; the secret (a token) never appears."""
    message = stderr.decode(errors="replace").strip()[-MAX_ERROR_CHARS:]
    if secret:
        message = message.replace(secret, "***")
    if code < 0:
        cause = KILLED_BY.get(signal.Signals(-code), f"signal {-code}")
        return f"git {verb(args)} was stopped by {cause}: {message}".rstrip(": ")
    return f"git {verb(args)} failed: {message}"


def find_prlimit() -> str:
    """util-linux's `prlimit` (part of every Debian); without it limits cannot be set."""
    found = shutil.which("prlimit")
    if found is None:
        raise HostGitError("prlimit (util-linux) is not installed; host git cannot be bounded")
    return found


async def run(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    secret: str | None = None,
    limits: Limits = FETCH,
    stdin: bytes | None = None,
) -> bytes:
    """Run host git in an empty home and working directory; its stdout, or `HostGitError`."""
    needs_prlimit = limits.memory_bytes is not None or limits.file_bytes is not None
    prlimit = find_prlimit() if needs_prlimit else "prlimit"
    argv = command(args, git_dir, limits, prlimit)
    async with locked_temp.locked_dir(HOME_PREFIX) as scratch:
        home = str(scratch / HOME_DIR)
        os.mkdir(home, 0o700)
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=home,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(home, os.environ.get("PATH", os.defpath), env or {}),
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), limits.seconds)
        except TimeoutError:
            raise HostGitError(f"git {verb(args)} took longer than {limits.seconds:.0f}s") from None
        finally:
            # Timed out or cancelled: no git outlives its call (killed without collecting its
            # status, which asyncio's child watcher must read).
            await asyncio.shield(child_process.stop(process))
    if process.returncode != 0:
        raise HostGitError(failure(args, process.returncode or 0, err, secret))
    return out


def sweep_homes(root: Path | None = None, now: float | None = None) -> int:
    """Remove the git homes nobody uses (a killed worker's git calls'); one of a live git
    call, in this process or another, stays. How many went."""
    return locked_temp.sweep(HOME_PREFIX, HOME_DIR, root, now)
