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
OUT_DIR = "/tmp/gantry-out"  # noqa: S108 (inside the container, which is ours alone)
PATCH_FILE = f"{OUT_DIR}/change.patch"
MESSAGE_FILE = f"{OUT_DIR}/message.txt"
# Whatever the agent did to .git/config, collecting runs no hook, fsmonitor or diff driver.
SAFE_GIT = (
    f"{GIT} -c core.hooksPath=/dev/null -c core.fsmonitor=false "
    "-c user.name=gantry -c user.email=gantry@localhost"
)


def snapshot_script() -> str:
    """Record the tree as setup and maintenance left it (untracked files too, ignored not)."""
    return (
        f"set -e; cd {WORKSPACE}; {SAFE_GIT} add -A; tree=$({SAFE_GIT} write-tree); "
        f'snap=$({SAFE_GIT} commit-tree "$tree" -p HEAD -m snapshot); '
        f'{SAFE_GIT} update-ref {SNAPSHOT_REF} "$snap"; {SAFE_GIT} reset --quiet'
    )


def collect_script(base_sha: str) -> str:
    """Write the patch (binary, renames, modes, deletions) and the agent's commit messages."""
    base = shlex.quote(base_sha)
    return (
        f"set -e; mkdir -p {OUT_DIR}; cd {WORKSPACE}; {SAFE_GIT} add -A; "
        f"{SAFE_GIT} diff --cached --binary --no-ext-diff --no-textconv --find-renames "
        f"{SNAPSHOT_REF} > {PATCH_FILE}; "
        f"{SAFE_GIT} log --format=%B {base}..HEAD > {MESSAGE_FILE} 2>/dev/null || true"
    )


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
