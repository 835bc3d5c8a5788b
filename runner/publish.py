"""Publishing: apply the agent's patch in a fresh host worktree, commit, push a branch."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from config.errors import GantryError
from runner.mirror import MirrorError, auth_env, git

SUBJECT_MAX_CHARS = 72
NOREPLY = "users.noreply.github.com"
# Host git must never run anything a repository or a patch could bring along.
SAFE_CONFIG = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "core.fsmonitor=false",
    "-c", "protocol.file.allow=always",
]  # fmt: skip


REJECTIONS = ("stale info", "rejected", "fetch first")


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
    """Subject, body, and the requester as co-author (the trailer GitHub understands)."""
    parts = [subject_line(subject)]
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
    token: str | None
    expected_remote: str | None = None  # the branch head we built on; None for a new branch


async def _git(workdir: Path, *args: str, token: str | None = None) -> str:
    """Host git in our own fresh clone, with the work tree named explicitly."""
    command = [*SAFE_CONFIG, "-C", str(workdir), f"--work-tree={workdir}", *args]
    try:
        return await git(workdir / ".git", command, auth_env(token), token)
    except MirrorError as exc:
        raise PublishError(str(exc)) from None


async def publish(pub: Publication) -> str:
    """Commit the patch on `start_sha` in a fresh clone of the mirror and push; the new SHA."""
    scratch = Path(tempfile.mkdtemp(prefix="gantry-publish-"))
    workdir, patch_file, message_file = scratch / "tree", scratch / "patch", scratch / "message"
    patch_file.write_bytes(pub.patch)
    message_file.write_text(pub.message)
    try:
        clone = ["clone", "--quiet", "--shared", "--no-checkout", str(pub.mirror), str(workdir)]
        await git(None, clone, {}, None)
        await _git(workdir, "checkout", "--quiet", "--force", "--detach", pub.start_sha)
        if pub.patch:
            await _git(workdir, "apply", "--index", "--binary", "--3way", str(patch_file))
        who = ["-c", f"user.name={pub.author.name}", "-c", f"user.email={pub.author.email}"]
        await _git(workdir, *who, "commit", "--quiet", "--no-verify", f"--file={message_file}")
        sha = (await _git(workdir, "rev-parse", "HEAD")).strip()
        await push(workdir, pub)
        return sha
    except MirrorError as exc:
        raise PublishError(str(exc)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def push(workdir: Path, pub: Publication) -> None:
    """Push HEAD to the branch, only if it is still where we built (no blind force)."""
    expected = pub.expected_remote or ""
    lease = f"--force-with-lease=refs/heads/{pub.branch}:{expected}"
    try:
        refspec = f"HEAD:refs/heads/{pub.branch}"
        await _git(workdir, "push", "--quiet", lease, pub.clone_url, refspec, token=pub.token)
    except PublishError as exc:
        if any(word in str(exc) for word in REJECTIONS):
            message = f"{pub.branch} moved on the remote; rebuild on its head"
            raise PushRejectedError(message) from None
        raise
