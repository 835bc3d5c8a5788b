"""Whether the engine's kernel confines ptrace (Yama), which lets a phase end without a restart.

A phase ends with nothing of it left running. When the engine's process list shows exactly the
container's idle processes, `Sandbox.end_phase` may skip the restart, but only if nothing in the
container can take one of those idle processes over while keeping its PID: a root process of
the container can ptrace (or write the memory of) any process of its uid, unless Yama's
`ptrace_scope` is at least 1 (a process traces only its descendants; the agent's exec is no
ancestor of the idle processes, and CAP_SYS_PTRACE is dropped). The sysctl belongs to the
engine's kernel and is global: it is read once per engine, on this host when the engine is
local (otherwise the answer is no).
"""

from __future__ import annotations

from pathlib import Path

import docker

SCOPE_FILE = Path("/proc/sys/kernel/yama/ptrace_scope")
# docker-py's address for an engine on a local Unix socket: the same kernel as this process's
# (in a container with the socket mounted too: the sysctl is not namespaced).
LOCAL_ENGINE = "http+docker://localhost"
RESTART_COST = "every phase ends with a container restart (about 0.5 s)"
FIX = "set kernel.yama.ptrace_scope=1 on the engine's host to let Gantry skip it safely"


def parse_scope(text: str) -> int | None:
    """A `ptrace_scope` value (None: unreadable)."""
    value = text.strip()
    return int(value) if value.isdigit() else None


def confined(scope: int | None) -> bool:
    """Whether a process may trace only its descendants (or nothing at all)."""
    return scope is not None and scope >= 1


def describe(scope: int | None) -> str:
    """What the engine's kernel says, for the doctor."""
    if scope is None:
        return "the engine's kernel has no Yama ptrace_scope, or the engine is not on this host"
    return f"kernel.yama.ptrace_scope is {scope}"


def engine_scope(client: docker.DockerClient, scope_file: Path = SCOPE_FILE) -> int | None:
    """The engine's `ptrace_scope`, read on this host when the engine is local (never from
    inside a container: its `cat` would be the image's, and an image may be hostile); None
    for a remote engine or a kernel without Yama."""
    if str(client.api.base_url) != LOCAL_ENGINE:
        return None
    try:
        return parse_scope(scope_file.read_text())
    except OSError:
        return None
