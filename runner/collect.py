"""Collect: the agent's work as a patch, measured against a snapshot taken after setup."""

from __future__ import annotations

import io
import posixpath
import shlex
import tarfile
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import docker.errors

from runner.patch_policy import PatchRefusedError, nested_repos_refusal
from runner.sandbox import WORKSPACE, Sandbox, SandboxError, engine_call
from runner.workspace import GIT

SNAPSHOT_REF = "refs/gantry/snapshot"
SCRATCH = "/tmp/gantry"  # noqa: S108 (inside the container, which is ours alone)
PATCH_NAME, MESSAGE_NAME = "change.patch", "message.txt"
OUTPUT_DIR_NAME = "output"
# The tree the last check left (its id), recorded before the check's shell ends.
CHECKED_TREE = "checked-tree"
# The nested repositories with no commit that stopped `git add` (one path a line), and the
# collect script's exit status then: git cannot take such a directory in (it has no commit
# to link to), and the host names them instead of git's exit 128.
UNBORN_NAME = "unborn.paths"
UNBORN_EXIT = 86
UNBORN_MAX_BYTES = 64 * 1024
UNBORN_WHY = "with no commit (git cannot take in its files: it has no commit to link to)"
CHUNK_BYTES = 64 * 1024
# Tar headers, PAX records (xattrs) and padding around the one file: small, but bounded too.
HEADER_ALLOWANCE = 1024 * 1024
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
# Go's os.FileMode type bits (dir, symlink, pipe, socket, device, char device, irregular),
# as the engine reports them in the archive's stat header.
GO_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 25) | (1 << 24) | (1 << 26) | (1 << 21) | (1 << 19)
# Whatever the agent did to .git/config, collecting runs no hook, fsmonitor or diff driver.
SAFE_GIT = (
    f"{GIT} -c core.hooksPath=/dev/null -c core.fsmonitor=false "
    "-c user.name=gantry -c user.email=gantry@localhost"
)
# The agent's .git/config cannot change the patch's format (the host does not rely on it: it
# applies the patch itself and judges what it applied; this keeps honest patches applying).
DIFF_FORMAT = (
    "-c diff.mnemonicPrefix=false -c diff.noprefix=false -c diff.relative=false "
    "-c color.diff=false -c diff.external= -c core.quotePath=true"
)
DIFF_FLAGS = (
    "--binary --full-index --no-ext-diff --no-textconv --no-color --find-renames -U3 "
    "--src-prefix=a/ --dst-prefix=b/"
)


def snapshot_script(workspace: str = WORKSPACE) -> str:
    """Record the tree as setup and maintenance left it (untracked files too, ignored not)."""
    return (
        f"set -e; cd {shlex.quote(workspace)}; {SAFE_GIT} add -A; tree=$({SAFE_GIT} write-tree); "
        f'snap=$({SAFE_GIT} commit-tree "$tree" -p HEAD -m snapshot); '
        f'{SAFE_GIT} update-ref {SNAPSHOT_REF} "$snap"; {SAFE_GIT} reset --quiet'
    )


def output_dir(scratch: str) -> str:
    """`GANTRY_OUTPUT_DIR`: a directory beside the task file, outside the repository."""
    return f"{scratch}/{OUTPUT_DIR_NAME}"


def start_script(workspace: str = WORKSPACE, scratch: str = SCRATCH) -> str:
    """What makes an environment ready for the agent: the snapshot of its tree, and the
    agent's output directory (one exec, run by the executor as it prepares)."""
    return f"{snapshot_script(workspace)}; mkdir -p {shlex.quote(output_dir(scratch))}"


def private_index(scratch: str, name: str) -> tuple[str, str]:
    """A copy of the workspace's index for git to write, and the variable that points git at
    it: the workspace's own index stays as the agent left it, so what a check's `git diff`
    sees never depends on what Gantry measured before. The copy keeps the index's mtime: with
    a fresh one, git trusts entries the agent rewrote within the checkout's second
    (tests/runner/test_checked_tree.py). `scratch` is shell-quoted already."""
    index = f"{scratch}/{name}"
    return (
        f"{{ cp -p .git/index {index} 2>/dev/null || rm -f {index}; }}",
        f"GIT_INDEX_FILE={index}",
    )


def check_script(
    command: str,
    where: str,
    workspace: str = WORKSPACE,
    scratch: str = SCRATCH,
    first: bool = True,
) -> str:
    """One check, then the tree as it left the workspace, in the same shell.

    The tree is recorded before this shell exits, so whatever the check left running and
    writes after that (until the phase's end kills it) is not in the patch: collect diffs
    this tree (`collect_script(checked=True)`), through a private index (`private_index`).
    A check killed at its time limit records nothing, and leaves the tree the check before
    it recorded: its half-written files are not published. Before the `first` check, the
    tree as the agent left it is recorded (whatever the agent put at that path is gone)."""
    out = shlex.quote(scratch)
    tree = f"{out}/{CHECKED_TREE}"
    copy, use = private_index(out, "checked.index")
    record = (
        f"(mkdir -p {out} && cd {shlex.quote(workspace)} && {copy} && "
        f"{use} {SAFE_GIT} add -A && "
        f"{use} {SAFE_GIT} write-tree > {tree}.new && mv {tree}.new {tree}) >/dev/null 2>&1"
    )
    before = f"rm -f {tree}; {record} || rm -f {tree}\n" if first else ""
    return (
        f"{before}(\ncd {shlex.quote(where)} && {command}\n)\n"
        f"s=$?\n{record} || rm -f {tree}\nexit $s"
    )


def collect_script(
    base_sha: str, workspace: str = WORKSPACE, scratch: str = SCRATCH, checked: bool = False
) -> str:
    """Write the patch (binary, renames, modes, deletions) and the agent's commit messages.

    The snapshot says which paths the agent changed; the patch holds those paths from the
    task's commit (`base_sha`, where the host applies it) to the tree now. What setup left
    (untracked output, edits of tracked files on a fresh build) is in the base's terms then:
    a setup-made file the agent deleted drops out, one it rewrote is a new file, a file both
    changed is published as it is now, and the host can apply all of it.

    `checked`: the tree the last check left (see `check_script`) when there is one, else the
    workspace as it is now."""
    base, out = shlex.quote(base_sha), shlex.quote(scratch)
    copy, use = private_index(out, "collect.index")
    patch, paths = f"{out}/{PATCH_NAME}", f"{out}/changed.paths"
    add = f"{use} {SAFE_GIT} add -A || {unborn_script(use, out)}"
    now = f"{copy}; {add}; tree=$({use} {SAFE_GIT} write-tree)"
    if checked:
        now = (
            f"tree=$(cat {out}/{CHECKED_TREE} 2>/dev/null || true); "
            f'case "$tree" in ""|*[!0-9a-f]*) {now};; esac'
        )
    diff = f"{SAFE_GIT} --literal-pathspecs {DIFF_FORMAT} diff {DIFF_FLAGS}"
    measure = (
        f'{SAFE_GIT} diff --no-renames --name-only -z {SNAPSHOT_REF} "$tree" > {paths}; '
        f"if [ ! -s {paths} ]; then : > {patch}; "
        f"elif command -v xargs >/dev/null; then "
        f'xargs -0 {diff} {base} "$tree" -- < {paths} > {patch}; '
        # No xargs in the image: against the snapshot (a setup-made file the agent touched
        # then fails to apply on the host, with git's reason).
        f'else {diff} {SNAPSHOT_REF} "$tree" > {patch}; fi'
    )
    return (
        f"set -e; mkdir -p {out}; cd {shlex.quote(workspace)}; {now}; {measure}; "
        f"{SAFE_GIT} log --format=%B {base}..HEAD > {out}/{MESSAGE_NAME} 2>/dev/null || true; "
        # No commits of the agent's (the usual case): no file. The engine copies two files
        # out of a container one after the other (about 45 ms each); an absent one waits for none.
        f"[ -s {out}/{MESSAGE_NAME} ] || rm -f {out}/{MESSAGE_NAME}"
    )


def unborn_script(use: str, out: str) -> str:
    """After a failed `git add -A`: list the nested repositories with no commit (git shows a
    nested repository as one untracked `dir/`) and exit `UNBORN_EXIT`, or else exit with
    git's status. `use` points git at the private index; `out` is shell-quoted already."""
    listed = f"{out}/{UNBORN_NAME}"
    head = f'{SAFE_GIT} -C "$p" rev-parse -q --verify HEAD >/dev/null 2>&1'
    return (
        f"{{ s=$?; {use} {SAFE_GIT} -c core.quotePath=false ls-files -o --exclude-standard | "
        f'while IFS= read -r p; do case "$p" in */) {head} || printf "%s\\n" "${{p%/}}";; '
        f"esac; done > {listed}; [ -s {listed} ] && exit {UNBORN_EXIT}; exit $s; }}"
    )


def unborn_refusal(listing: bytes) -> PatchRefusedError:
    """The refusal of the nested repositories with no commit that `unborn_script` listed."""
    paths = [line for line in listing.decode(errors="replace").splitlines() if line]
    return nested_repos_refusal(paths or ["a directory"], UNBORN_WHY)


def tar_file(path: str, data: bytes) -> bytes:
    """A tar archive holding one file at `path` (relative to /). No directory entries: the
    engine makes missing parents, and an entry for /tmp would reset its sticky mode."""
    return tar_files([(path, data)])


def tar_files(files: list[tuple[str, bytes]]) -> bytes:
    """A tar archive of files at their paths (relative to /), likewise without directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files:
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def too_big(size: int, limit: int) -> str:
    return f"the change is {size:,} bytes, over the limit of {limit:,}"


class CappedStream(io.RawIOBase):
    """The engine's archive chunks as a file that refuses to yield more than `limit` bytes."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        super().__init__()
        self.chunks, self.limit = chunks, limit
        self.pending, self.total = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            self.pending = next(self.chunks, b"")
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        self.total += size
        if self.total > self.limit:
            raise PatchRefusedError(f"the agent's output is over {self.limit:,} bytes")
        return size


def stat_refusal(stat: Mapping[str, Any] | None, max_bytes: int) -> str | None:
    """Why the engine's stat of the path already rules it out, if it does."""
    if stat is None:
        return None
    if int(stat.get("mode", 0)) & GO_MODE_TYPE or stat.get("linkTarget"):
        return "the agent's output is not a regular file"
    size = int(stat.get("size", 0))
    return too_big(size, max_bytes) if size > max_bytes else None


def member_refusal(member: tarfile.TarInfo | None, name: str, max_bytes: int) -> str | None:
    """Why a tar entry is not the one regular file we asked for, if it is not."""
    if member is None or member.type not in REGULAR or member.sparse is not None:
        return "the agent's output is not a regular file"
    if member.name != name:
        return "the agent's output is not the file that was asked for"
    return too_big(member.size, max_bytes) if member.size > max_bytes else None


def read_single(chunks: Iterator[bytes], name: str, max_bytes: int) -> bytes:
    """The one regular file of an archive stream, its header checked before its data is read."""
    stream = CappedStream(chunks, max_bytes + HEADER_ALLOWANCE)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            member = tar.next()
            refusal = member_refusal(member, name, max_bytes)
            handle = tar.extractfile(member) if member is not None and refusal is None else None
            if handle is None:
                raise PatchRefusedError(refusal or "the agent's output is not a regular file")
            data = handle.read(max_bytes + 1)
            if len(data) != member.size or tar.next() is not None:  # type: ignore[union-attr]
                raise PatchRefusedError("the agent's output is not a single regular file")
    except tarfile.TarError as exc:
        raise PatchRefusedError(f"the agent's output could not be read: {exc}") from None
    return data


async def read_file(sandbox: Sandbox, path: str, max_bytes: int) -> bytes:
    """A regular file from the container (empty when absent), never more than `max_bytes`."""

    def fetch() -> bytes:
        try:
            chunks, stat = sandbox.container.get_archive(path, chunk_size=CHUNK_BYTES)
        except docker.errors.NotFound:
            return b""
        try:
            refusal = stat_refusal(stat, max_bytes)
            if refusal is not None:
                raise PatchRefusedError(refusal)
            return read_single(iter(chunks), posixpath.basename(path), max_bytes)
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # a refused stream is dropped, not drained

    try:
        return await engine_call(fetch)
    except SandboxError as exc:
        raise PatchRefusedError(f"could not read the agent's output: {exc}") from None
