"""Host-side bare mirrors, one per repository, fetched with a token that never touches disk."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner import host_git

MIRRORS_DIR = "mirrors"
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
HEADS = "+refs/heads/*:refs/heads/*"
TAGS = "+refs/tags/*:refs/tags/*"
TOKEN_USER = "x-access-token"  # noqa: S105 (GitHub's user name for installation tokens)


# Installation tokens live an hour: a long task asks for one at each use, not once.
TokenSource = Callable[[], Awaitable[str | None]]
Credential = str | TokenSource | None


async def current_token(credential: Credential) -> str | None:
    """The token for a git call about to run: a fixed one, or a fresh one from its source."""
    if credential is None or isinstance(credential, str):
        return credential
    return await credential()


class MirrorError(host_git.HostGitError):
    """A mirror could not be created or fetched."""


@dataclass(frozen=True)
class FetchResult:
    """Where a repository's mirror is, and whether this call had to fetch."""

    path: Path
    fetched: bool


def mirror_path(data_dir: Path, repo: str) -> Path:
    """`DATA_DIR/mirrors/owner/name.git`; refuses names that could escape the directory."""
    if not REPO_RE.fullmatch(repo) or ".." in repo:
        raise MirrorError(f"not a repository name: {repo!r}")
    owner, name = repo.lower().split("/")
    return data_dir / MIRRORS_DIR / owner / f"{name.removesuffix('.git')}.git"


def auth_env(token: str | None) -> dict[str, str]:
    """Git config from the environment of one call: the token is never written to a file."""
    env: dict[str, str] = {}
    if token:
        basic = base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
    return env


def refspecs(ref: str | None) -> list[str]:
    """Branches and tags, plus one extra ref (a pull request's head) when asked."""
    specs = [HEADS, TAGS]
    if ref and ref.startswith("refs/") and not ref.startswith(("refs/heads/", "refs/tags/")):
        specs.append(f"+{ref}:{ref}")
    return specs


@dataclass(frozen=True)
class Tidy:
    """When a mirror's objects are packed after a fetch (git's own `gc --auto` limits)."""

    loose: int = 6700
    packs: int = 50


class Mirrors:
    """The mirrors under a data directory; one fetch at a time per repository."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.absolute()  # host git runs in an empty directory of its own
        self._locks: dict[str, asyncio.Lock] = {}
        self.tidy = Tidy()

    def path(self, repo: str) -> Path:
        """The mirror directory of a repository."""
        return mirror_path(self.data_dir, repo)

    async def ensure(
        self, repo: str, clone_url: str, sha: str, token: Credential, ref: str | None = None
    ) -> FetchResult:
        """Make sure the mirror holds `sha`; fetch only when it does not (git sends the delta)."""
        if not SHA_RE.fullmatch(sha):
            raise MirrorError(f"not a commit SHA: {sha!r}")
        path = self.path(repo)
        async with self._locks.setdefault(repo.lower(), asyncio.Lock()):
            if not path.exists():
                await self._init(path)
            elif await self.has_commit(path, sha):
                return FetchResult(path, fetched=False)
            await fetch(path, [clone_url, *refspecs(ref)], token, prune=True)
            if not await self.has_commit(path, sha):
                # A commit no branch holds any more: ask for it by name (GitHub allows it).
                await fetch(path, [clone_url, sha], token)
            await self._tidy(path)
            return FetchResult(path, fetched=True)

    async def _tidy(self, path: Path) -> None:
        """Pack what fetches left loose (mirrors have gc.auto 0: a fetch never collects)."""
        loose, packs = object_counts(await git(path, ["count-objects", "-v"], {}, None))
        for step in tidy_steps(loose, packs, self.tidy):
            await git(path, step, {}, None)

    async def _init(self, path: Path) -> None:
        """An empty bare mirror, created under a temporary name and renamed when ready."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        await git(None, ["init", "--quiet", "--bare", str(partial)], {}, None)
        # Objects come from fetches; no hooks or remotes are ever configured.
        await git(partial, ["config", "gc.auto", "0"], {}, None)
        partial.rename(path)

    async def is_ancestor(self, repo: str, ancestor: str, sha: str) -> bool:
        """Whether `sha`'s history holds `ancestor` (False when the mirror lacks either)."""
        try:
            await git(self.path(repo), ["merge-base", "--is-ancestor", ancestor, sha], {}, None)
        except MirrorError:
            return False
        return True

    async def has_commit(self, path: Path, sha: str) -> bool:
        """Whether the mirror holds a commit."""
        try:
            await git(path, ["cat-file", "-e", f"{sha}^{{commit}}"], {}, None)
        except MirrorError:
            return False
        return True


def object_counts(text: str) -> tuple[int, int]:
    """`git count-objects -v` as (loose objects, packs). Pure."""
    counts = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return int(counts.get("count", 0)), int(counts.get("packs", 0))


def tidy_steps(loose: int, packs: int, limits: Tidy) -> list[list[str]]:
    """git's housekeeping a mirror needs now: loose objects packed, many packs made one.
    Nothing is pruned: a running checkout may still read an object no ref holds. Pure."""
    steps = []
    if loose >= limits.loose:
        steps.append(["repack", "-d", "-q"])
    if packs >= limits.packs:
        steps.append(["repack", "-a", "-d", "-q", "--keep-unreachable"])
    return steps


async def fetch(path: Path, args: list[str], credential: Credential, prune: bool = False) -> None:
    """`git fetch` into a mirror with a token taken at this moment."""
    token = await current_token(credential)
    flags = ["--prune", "--quiet"] if prune else ["--quiet"]
    await git(path, ["fetch", *flags, *args], auth_env(token), token)


async def git(
    git_dir: Path | None, args: list[str], env: Mapping[str, str], token: str | None
) -> str:
    """Host git on a bare mirror or our own clone (never on a tree a container wrote)."""
    try:
        out = await host_git.run(args, git_dir=git_dir, env=env, secret=token)
    except host_git.HostGitError as exc:
        raise MirrorError(str(exc)) from None
    return out.decode(errors="replace")
