"""Collect: the agent's work as a patch, measured against a snapshot taken after setup."""

from __future__ import annotations

import io
import shlex
import tarfile

import docker.errors

from runner.patch_policy import PatchRefusedError
from runner.sandbox import WORKSPACE, Sandbox, SandboxError, engine_call
from runner.workspace import GIT

SNAPSHOT_REF = "refs/gantry/snapshot"
SCRATCH = "/tmp/gantry"  # noqa: S108 (inside the container, which is ours alone)
PATCH_NAME, MESSAGE_NAME = "change.patch", "message.txt"
# Whatever the agent did to .git/config, collecting runs no hook, fsmonitor or diff driver.
SAFE_GIT = (
    f"{GIT} -c core.hooksPath=/dev/null -c core.fsmonitor=false "
    "-c user.name=gantry -c user.email=gantry@localhost"
)


def snapshot_script(workspace: str = WORKSPACE) -> str:
    """Record the tree as setup and maintenance left it (untracked files too, ignored not)."""
    return (
        f"set -e; cd {shlex.quote(workspace)}; {SAFE_GIT} add -A; tree=$({SAFE_GIT} write-tree); "
        f'snap=$({SAFE_GIT} commit-tree "$tree" -p HEAD -m snapshot); '
        f'{SAFE_GIT} update-ref {SNAPSHOT_REF} "$snap"; {SAFE_GIT} reset --quiet'
    )


def collect_script(base_sha: str, workspace: str = WORKSPACE, scratch: str = SCRATCH) -> str:
    """Write the patch (binary, renames, modes, deletions) and the agent's commit messages."""
    base, out = shlex.quote(base_sha), shlex.quote(scratch)
    return (
        f"set -e; mkdir -p {out}; cd {shlex.quote(workspace)}; {SAFE_GIT} add -A; "
        f"{SAFE_GIT} diff --cached --binary --no-ext-diff --no-textconv --find-renames "
        f"{SNAPSHOT_REF} > {out}/{PATCH_NAME}; "
        f"{SAFE_GIT} log --format=%B {base}..HEAD > {out}/{MESSAGE_NAME} 2>/dev/null || true"
    )


def tar_file(path: str, data: bytes) -> bytes:
    """A tar archive holding one file at `path` (relative to /). No directory entries: the
    engine makes missing parents, and an entry for /tmp would reset its sticky mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def too_big(size: int, limit: int) -> str:
    return f"the change is {size:,} bytes, over the limit of {limit:,}"


def extract_single(archive: bytes, max_bytes: int) -> bytes:
    """The one regular file of a `get_archive` tar, refusing anything larger than allowed."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        if member is None:
            raise PatchRefusedError("the agent's output is not a regular file")
        if member.size > max_bytes:
            raise PatchRefusedError(too_big(member.size, max_bytes))
        handle = tar.extractfile(member)
        return handle.read() if handle is not None else b""


async def read_file(sandbox: Sandbox, path: str, max_bytes: int) -> bytes:
    """A file from the container, size-checked before it is read into memory."""

    def fetch() -> bytes:
        try:
            stream, stat = sandbox.container.get_archive(path)
        except docker.errors.NotFound:
            return b""
        size = int((stat or {}).get("size", 0))
        if size > max_bytes:
            raise PatchRefusedError(too_big(size, max_bytes))
        return b"".join(stream)

    try:
        archive = await engine_call(fetch)
    except SandboxError as exc:
        raise PatchRefusedError(f"could not read the agent's output: {exc}") from None
    return extract_single(archive, max_bytes) if archive else b""
