"""Publishing: the host's git applies the agent's patch to a scratch index, commits, pushes.

No file of the repository or the patch is ever checked out on the host: the patch is applied
to an index in a bare scratch repository that borrows the mirror's objects, under the
limits of `host_git.PATCH_WORK`, after its expanded size was checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from config.errors import GantryError
from runner import host_git, locked_temp
from runner.mirror import Credential, auth_env, current_token
from runner.patch_policy import (
    MAX_EXPANDED_BYTES,
    AppliedChange,
    PatchRefusedError,
    check_expanded,
)

SUBJECT_MAX_CHARS = 72
NOREPLY = "users.noreply.github.com"
REJECTIONS = ("stale info", "rejected", "fetch first")
GITLINK_MODE = "160000"  # a submodule link in a tree
# Scratch repositories live in the temporary directory as `gantry-publish-*`, each locked
# for as long as it is used (`locked_temp`): what a `kill -9` left is told from what a live
# task uses.
SCRATCH_PREFIX = "gantry-publish-"
SCRATCH_REPO = "repo.git"


class PublishError(GantryError):
    """The patch could not be applied, committed or pushed."""


class PushRejectedError(PublishError):
    """The branch moved on the remote since we read it: someone pushed meanwhile."""


@dataclass(frozen=True)
class Identity:
    """Who a commit is by."""

    name: str
    email: str

    def trailer(self) -> str:
        return f"Co-authored-by: {self.name} <{self.email}>"


def bot_identity(slug: str, bot_user_id: int) -> Identity:
    """The App's bot user, as GitHub attributes its commits."""
    return Identity(f"{slug}[bot]", f"{bot_user_id}+{slug}[bot]@{NOREPLY}")


def user_identity(login: str, user_id: int | None) -> Identity:
    """A GitHub user by their no-reply address, so the co-author links to the account."""
    local = f"{user_id}+{login}" if user_id is not None else login
    return Identity(login, f"{local}@{NOREPLY}")


def subject_line(text: str) -> str:
    """The first line of a request or commit message, cut to a commit subject."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > SUBJECT_MAX_CHARS:
        first = first[: SUBJECT_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return first or "Changes requested from Gantry"


def commit_message(subject: str, body: str, co_author: Identity) -> str:
    """Subject, body, and the requester as co-author (the trailer GitHub understands). A
    first line too long for a subject is cut there and kept whole at the top of the body."""
    line = subject_line(subject)
    first = next((text.strip() for text in subject.splitlines() if text.strip()), "")
    parts = [line]
    if first and line != first:
        parts.append(first)
    if body.strip():
        parts.append(body.strip())
    parts.append(co_author.trailer())
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class Publication:
    """What to publish and where."""

    mirror: Path
    start_sha: str
    patch: bytes
    branch: str
    message: str
    author: Identity
    clone_url: str
    token: Credential
    expected_remote: str | None = None  # the branch head we built on; None for a new branch
    max_expanded_bytes: int = MAX_EXPANDED_BYTES


async def _git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Host git on our own scratch repository, under the limits for work on a patch."""
    out = await host_git.run(args, git_dir=repo, env=env, limits=host_git.PATCH_WORK)
    return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def scratch_repo(mirror: Path) -> AsyncIterator[Path]:
    """An empty bare repository that borrows the mirror's objects; removed afterwards, and
    locked meanwhile (`sweep_scratch` removes it only once its process is gone)."""
    async with locked_temp.locked_dir(SCRATCH_PREFIX) as scratch:
        repo = scratch / SCRATCH_REPO
        await host_git.run(["init", "--quiet", "--bare", str(repo)])
        alternates = repo / "objects" / "info" / "alternates"
        alternates.write_text(f"{(mirror / 'objects').resolve()}\n")
        yield repo


def sweep_scratch(root: Path | None = None, now: float | None = None) -> int:
    """Remove the publish scratch directories nobody uses (a killed worker's): the
    `gantry-publish-*` directories of this user in `root` (the temporary directory) whose
    lock nobody holds. One in use, by a task of this process or any other, stays. How many
    went."""
    return locked_temp.sweep(SCRATCH_PREFIX, SCRATCH_REPO, root, now)


async def apply_patch(repo: Path, start_sha: str, patch: bytes, max_expanded: int) -> str:
    """The tree of `start_sha` with the patch applied to an index only: no file is checked out."""
    check_expanded(patch, max_expanded)  # before the host's git writes anything
    await _git(repo, "read-tree", f"{start_sha}^{{tree}}")
    if patch.strip():
        patch_file = repo / "gantry.patch"
        patch_file.write_bytes(patch)
        await _git(repo, "apply", "--cached", "--binary", "--3way", str(patch_file))
    return (await _git(repo, "write-tree")).strip()


async def measure(repo: Path, start_sha: str, tree: str) -> AppliedChange:
    """The paths and bytes that differ between the start and the new tree, by host git."""
    raw = await _git(repo, "diff-tree", "-r", "-z", "--no-renames", start_sha, tree)
    entries = raw_entries(raw)
    blobs = [sha for sha, _ in entries if sha.strip("0")]
    sizes = b""
    if blobs:
        query = "".join(f"{sha}\n" for sha in blobs).encode()
        check = ["cat-file", "--batch-check=%(objectsize)"]
        sizes = await host_git.run(check, git_dir=repo, limits=host_git.PATCH_WORK, stdin=query)
    written = sum(int(line) for line in sizes.splitlines() if line.isdigit())  # not "missing"
    paths = tuple(sorted(path for _, path in entries))
    return AppliedChange(paths, written, new_gitlinks(raw))


def raw_entries(raw: str) -> list[tuple[str, str]]:
    """`diff-tree -r -z --no-renames` as (new object, path) pairs; deletions have zeros. Pure."""
    return [(meta.split()[3], path) for meta, path in raw_fields(raw)]


def new_gitlinks(raw: str) -> tuple[str, ...]:
    """The paths `diff-tree -r -z` shows turned into gitlinks (mode 160000). Pure."""
    links = [path for meta, path in raw_fields(raw) if gitlink_made(meta)]
    return tuple(sorted(links))


def gitlink_made(meta: str) -> bool:
    old_mode, new_mode = meta.lstrip(":").split()[:2]
    return new_mode == GITLINK_MODE and old_mode != GITLINK_MODE


def raw_fields(raw: str) -> list[tuple[str, str]]:
    """`diff-tree -r -z --no-renames` as (meta, path) pairs. Pure."""
    fields = raw.split("\0")
    return [
        (meta, path)
        for meta, path in zip(fields[0::2], fields[1::2], strict=False)
        if meta.startswith(":")
    ]


async def applied_change(
    mirror: Path, start_sha: str, patch: bytes, max_expanded: int = MAX_EXPANDED_BYTES
) -> AppliedChange:
    """What the host's git makes of the container's patch on `start_sha`; refused if it can't."""
    async with scratch_repo(mirror) as repo:
        try:
            tree = await apply_patch(repo, start_sha, patch, max_expanded)
            return await measure(repo, start_sha, tree)
        except host_git.HostGitError as exc:
            raise PatchRefusedError(f"the host could not apply the change: {exc}") from None


async def nothing_to_keep(sha: str) -> None:
    """Where a publication's commit is kept before its push when nobody keeps it."""


async def publish(
    pub: Publication, keep: Callable[[str], Awaitable[None]] = nothing_to_keep
) -> str:
    """Commit the patch on `start_sha` in a scratch repository and push; the new SHA. `keep`
    hears the commit before it is pushed: a retry after a crash in between can find it."""
    async with scratch_repo(pub.mirror) as repo:
        try:
            tree = await apply_patch(repo, pub.start_sha, pub.patch, pub.max_expanded_bytes)
            message_file = repo / "gantry.message"
            message_file.write_text(pub.message)
            who = {"GIT_AUTHOR_NAME": pub.author.name, "GIT_AUTHOR_EMAIL": pub.author.email}
            who |= {"GIT_COMMITTER_NAME": pub.author.name, "GIT_COMMITTER_EMAIL": pub.author.email}
            commit = ["commit-tree", tree, "-p", pub.start_sha, "-F", str(message_file)]
            sha = (await _git(repo, *commit, env=who)).strip()
            await keep(sha)
            await push(repo, sha, pub)
        except host_git.HostGitError as exc:
            raise PublishError(str(exc)) from None
        return sha


async def push(repo: Path, sha: str, pub: Publication) -> None:
    """Push the commit to the branch, only if it is still where we built (no blind force)."""
    expected = pub.expected_remote or ""
    lease = f"--force-with-lease=refs/heads/{pub.branch}:{expected}"
    refspec = f"{sha}:refs/heads/{pub.branch}"
    args = ["push", "--quiet", lease, pub.clone_url, refspec]
    token = await current_token(pub.token)  # fresh now, however long the task ran
    try:
        await host_git.run(args, git_dir=repo, env=auth_env(token), secret=token)
    except host_git.HostGitError as exc:
        if any(word in str(exc) for word in REJECTIONS):
            message = f"{pub.branch} moved on the remote; rebuild on its head"
            raise PushRejectedError(message) from None
        raise
