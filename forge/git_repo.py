"""Bare git repositories on disk: create them from a folder, read refs, trees and blobs."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FIXED_AUTHOR = {
    "GIT_AUTHOR_NAME": "Forge",
    "GIT_AUTHOR_EMAIL": "forge@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "Forge",
    "GIT_COMMITTER_EMAIL": "forge@example.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
# Keep the user's and system's git config out of the stand-in's repositories.
ISOLATED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}
INITIAL_MESSAGE = "Initial commit"
NULL_SHA = "0" * 40
COMMIT_FIELDS = "%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd%x00%T%x00%P%x00%B"


class GitError(RuntimeError):
    """A git command failed."""


@dataclass(frozen=True)
class TreeEntry:
    """One line of `git ls-tree -l`."""

    mode: str
    type: str
    sha: str
    size: int
    path: str


@dataclass(frozen=True)
class DiffEntry:
    """One file a diff touches: git's status letter, paths, blob SHAs and line counts."""

    status: str
    path: str
    old_path: str
    old_sha: str
    new_sha: str
    additions: int = 0
    deletions: int = 0


@dataclass(frozen=True)
class CommitInfo:
    """The parts of a commit the REST API shows."""

    sha: str
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    tree: str
    parents: tuple[str, ...]
    message: str


async def git(
    git_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    stdin: bytes | None = None,
) -> tuple[int, bytes]:
    """Run git against a bare repo (feeding `stdin` when given); return (exit code, stdout)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        f"--git-dir={git_dir}",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **ISOLATED_ENV, **(env or {})},
    )
    out, err = await proc.communicate(stdin)
    code = proc.returncode or 0
    if check and code != 0:
        raise GitError(f"git {' '.join(args)} failed ({code}): {err.decode(errors='replace')}")
    return code, out


async def init_bare(git_dir: Path, source: Path | None, default_branch: str) -> str | None:
    """Create a bare repo; commit `source`'s files on `default_branch`; return that SHA."""
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    await git(git_dir, "init", "--quiet", "--bare", f"--initial-branch={default_branch}")
    await git(git_dir, "config", "http.receivepack", "true")
    if source is None:
        return None
    with tempfile.TemporaryDirectory(prefix="forge-index-") as tmp:
        env = {**FIXED_AUTHOR, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        await git(git_dir, f"--work-tree={source}", "add", "--all", ".", env=env)
        _, tree = await git(git_dir, "write-tree", env=env)
        args = ("commit-tree", tree.decode().strip(), "-m", INITIAL_MESSAGE)
        _, commit = await git(git_dir, *args, env=env)
    sha = commit.decode().strip()
    await git(git_dir, "update-ref", f"refs/heads/{default_branch}", sha)
    return sha


async def branch_heads(git_dir: Path) -> dict[str, str]:
    """Every branch name and the SHA it points at."""
    _, out = await git(git_dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads")
    heads: dict[str, str] = {}
    for line in out.decode().splitlines():
        sha, _, ref = line.partition(" ")
        heads[ref.removeprefix("refs/heads/")] = sha
    return heads


async def resolve_commit(git_dir: Path, ref: str) -> str | None:
    """The commit SHA a branch, tag or SHA names, or None."""
    if ref.startswith("-"):
        return None
    code, out = await git(
        git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
    )
    return out.decode().strip() if code == 0 else None


async def resolve_tree(git_dir: Path, ref: str) -> str | None:
    """The tree SHA that a tree SHA, a commit SHA, a branch or a tag names, or None."""
    if ref.startswith("-"):
        return None
    code, out = await git(
        git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}", check=False
    )
    return out.decode().strip() if code == 0 else None


async def list_tree(git_dir: Path, tree: str, *, recursive: bool) -> list[TreeEntry]:
    """Every entry of a tree; recursive lists subtrees and their contents too."""
    args = ("ls-tree", "-l", "-z", *(("-r", "-t") if recursive else ()), tree)
    _, out = await git(git_dir, *args)
    return _ls_tree_entries(out)


async def tree_entries(git_dir: Path, commit: str, path: str) -> list[TreeEntry]:
    """`ls-tree -l` of `path` itself; with a trailing `/`, of the directory's children."""
    code, out = await git(git_dir, "ls-tree", "-l", "-z", commit, "--", path, check=False)
    if code != 0:
        return []
    return _ls_tree_entries(out)


def _ls_tree_entries(out: bytes) -> list[TreeEntry]:
    """Parse `git ls-tree -l -z` output."""
    entries = []
    for record in out.decode().split("\0"):
        if not record:
            continue
        meta, _, name = record.partition("\t")
        mode, kind, sha, size = meta.split()
        entries.append(TreeEntry(mode, kind, sha, int(size) if size != "-" else 0, name))
    return entries


async def read_blob(git_dir: Path, sha: str) -> bytes:
    """The bytes of a blob."""
    _, out = await git(git_dir, "cat-file", "blob", sha)
    return out


async def commit_info(git_dir: Path, sha: str) -> CommitInfo:
    """Author, committer, tree, parents and message of a commit."""
    # Dates in UTC, whatever zone the committer was in (GitHub shows them that way).
    args = ("show", "-s", "--date=iso-strict-local", f"--format={COMMIT_FIELDS}", sha)
    _, out = await git(git_dir, *args, env={"TZ": "UTC"})
    name, email, date, c_name, c_email, c_date, tree, parents, message = out.decode().split("\0")
    return CommitInfo(
        sha=sha,
        author_name=name,
        author_email=email,
        author_date=date,
        committer_name=c_name,
        committer_email=c_email,
        committer_date=c_date,
        tree=tree,
        parents=tuple(parents.split()),
        message=message.rstrip("\n"),
    )


async def commit_files(
    git_dir: Path, parent: str, branch: str, files: Mapping[str, bytes | None], message: str
) -> str:
    """Commit `files` (path → bytes, None deletes) on top of `parent`; point `branch` at it."""
    with tempfile.TemporaryDirectory(prefix="forge-index-") as tmp:
        env = {**FIXED_AUTHOR, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        await git(git_dir, "read-tree", parent, env=env)
        lines = []
        for path, data in files.items():
            if data is None:  # mode 0 removes the path from the index
                lines.append(f"0 {NULL_SHA}\t{path}\n")
                continue
            _, blob = await git(git_dir, "hash-object", "-w", "--stdin", stdin=data)
            lines.append(f"100644 {blob.decode().strip()}\t{path}\n")
        await git(git_dir, "update-index", "--index-info", env=env, stdin="".join(lines).encode())
        _, tree = await git(git_dir, "write-tree", env=env)
        args = ("commit-tree", tree.decode().strip(), "-p", parent, "-m", message)
        _, commit = await git(git_dir, *args, env=env)
    sha = commit.decode().strip()
    await git(git_dir, "update-ref", f"refs/heads/{branch}", sha)
    return sha


async def diff_files(git_dir: Path, base: str, head: str) -> list[DiffEntry]:
    """The files a PR changes: `head` against its merge base with `base`, renames found."""
    _, merge_base = await git(git_dir, "merge-base", base, head)
    ends = (merge_base.decode().strip(), head)
    _, raw = await git(git_dir, "diff", "--raw", "-z", "-M", "--no-abbrev", *ends)
    _, numstat = await git(git_dir, "diff", "--numstat", "-z", "-M", *ends)
    counts = _numstat_counts(numstat.decode())
    entries = []
    fields = raw.decode().split("\0")
    index = 0
    while index < len(fields) and fields[index].startswith(":"):
        _, _, old_sha, new_sha, status = fields[index][1:].split()
        renamed = status[0] in "RC"
        old_path, path = fields[index + 1], fields[index + 1 + renamed]
        added, deleted = counts.get(path, (0, 0))
        entries.append(DiffEntry(status[0], path, old_path, old_sha, new_sha, added, deleted))
        index += 2 + renamed
    return entries


async def file_patch(git_dir: Path, base: str, head: str, paths: tuple[str, ...]) -> str:
    """A file's hunks (from the first `@@`) between the merge base and `head`, as GitHub's
    `patch`; empty for a binary file."""
    _, merge_base = await git(git_dir, "merge-base", base, head)
    args = ("diff", "--no-color", "--no-ext-diff", "-U3", "-M", merge_base.decode().strip(), head)
    _, out = await git(git_dir, *args, "--", *paths)
    text = out.decode(errors="replace")
    start = text.find("\n@@")
    return text[start + 1 :].rstrip("\n") if start >= 0 else ""


def _numstat_counts(text: str) -> dict[str, tuple[int, int]]:
    """`git diff --numstat -z` as path → (added, deleted); binary files count 0."""
    counts: dict[str, tuple[int, int]] = {}
    fields = text.split("\0")
    index = 0
    while index < len(fields) and fields[index]:
        added, deleted, path = fields[index].split("\t", 2)
        if not path:  # a rename: the old and new paths follow as their own fields
            path = fields[index + 2]
            index += 2
        counts[path] = (int(added) if added != "-" else 0, int(deleted) if deleted != "-" else 0)
        index += 1
    return counts
