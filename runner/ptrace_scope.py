"""Whether the engine's kernel confines ptrace (Yama), which lets a phase end without a restart.

A phase ends with nothing of it left running. When the engine's process list shows exactly the
container's idle processes, `Sandbox.end_phase` may skip the restart, but only if nothing in the
container can take one of those idle processes over while keeping its PID: a root process of
the container can ptrace (or write the memory of) any process of its uid, unless Yama's
`ptrace_scope` is at least 1 (a process traces only its descendants; the agent's exec is no
ancestor of the idle processes, and CAP_SYS_PTRACE is dropped). The sysctl belongs to the
engine's kernel, is global and read-only in containers: it is read once per engine, from a
fresh container before any command ran in it.
"""

from __future__ import annotations

import weakref

import docker

SCOPE_FILE = "/proc/sys/kernel/yama/ptrace_scope"
PROBE_LABELS = {"gantry.managed": "1", "gantry.kind": "ptrace-probe"}
# Through the shell, so that a kernel without Yama (no such file) answers too.
READ_COMMAND = f"cat {SCOPE_FILE} 2>/dev/null || echo absent"
RESTART_COST = "every phase ends with a container restart (about 0.5 s)"
FIX = "set kernel.yama.ptrace_scope=1 on the engine's host to let Gantry skip it safely"


def parse_scope(text: str) -> int | None:
    """The `ptrace_scope` value read in a container (None: no Yama, or unreadable)."""
    value = text.strip()
    return int(value) if value.isdigit() else None


def confined(scope: int | None) -> bool:
    """Whether a process may trace only its descendants (or nothing at all)."""
    return scope is not None and scope >= 1


def describe(scope: int | None) -> str:
    """What the engine's kernel says, for the doctor."""
    if scope is None:
        return "the engine's kernel has no Yama ptrace_scope"
    return f"kernel.yama.ptrace_scope is {scope}"


class ScopeCache:
    """One answer per engine client: a sysctl does not change under running containers that
    matter to us (a change to it is an operator's, and applies from Gantry's next start)."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[docker.DockerClient, bool] = (
            weakref.WeakKeyDictionary()
        )

    def known(self, client: docker.DockerClient) -> bool | None:
        """Whether the engine confines ptrace (None: not read yet)."""
        return self._known.get(client)

    def remember(self, client: docker.DockerClient, answer: bool) -> None:
        """Keep the engine's answer."""
        self._known[client] = answer


def read_scope(client: docker.DockerClient, image: str) -> int | None:
    """The engine's `ptrace_scope`, read in a throwaway container of `image` (blocking)."""
    output = client.containers.run(
        image,
        [READ_COMMAND],
        entrypoint=["/bin/sh", "-c"],
        labels=PROBE_LABELS,
        network_mode="none",
        remove=True,
    )
    return parse_scope(bytes(output).decode(errors="replace"))
