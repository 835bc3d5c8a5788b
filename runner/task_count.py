"""How many tasks (threads included) a container's pids cgroup holds, read on the engine's host.

`Sandbox.end_phase` needs one number the kernel keeps atomically: a process is counted from
its fork on, so a process that forks and exits in a loop is always in it (it never shows in
the engine's process list, which reads the cgroup's PIDs, then runs `ps` for them). The
engine's stats API gives the same count, but a second call within a second waits for its
collector's next tick (0.7-0.9 s here). So the count is read from the cgroup file when this
process shares the engine's host: the container's idle process (a host PID, from the engine's
process list) names its cgroup in `/proc/PID/cgroup`, and the path must hold the container's
ID, which a process of another PID namespace (Gantry in a container) would not show.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
COUNT_FILE = "pids.current"


def count_file(cgroup_text: str, container_id: str, root: Path = CGROUP_ROOT) -> Path | None:
    """Where the pids count of the cgroup named in a `/proc/PID/cgroup` is (v1's `pids`
    hierarchy, else v2's unified one), when that cgroup is the container's (None: it is not)."""
    unified = None
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not container_id or container_id not in parts[2]:
            continue
        controllers, path = parts[1].split(","), parts[2].lstrip("/")
        if "pids" in controllers:
            return root / "pids" / path / COUNT_FILE
        if parts[0] == "0" and parts[1] == "":
            unified = root / path / COUNT_FILE
    return unified


def host_count(
    pid: str, container_id: str, proc: Path = PROC, root: Path = CGROUP_ROOT
) -> int | None:
    """The pids count of the container holding host process `pid`, read here (None: not
    readable from this process, or not the container's)."""
    try:
        where = count_file((proc / pid / "cgroup").read_text(), container_id, root)
        text = where.read_text().strip() if where is not None else ""
    except OSError:
        return None
    return int(text) if text.isdigit() else None
