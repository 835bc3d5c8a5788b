"""A local repository's config and AGENTS.md files as one commit has them, read with host git.

`gantry run --ref REF` runs that commit's code, so it reads the config and AGENTS.md of that
commit too, never the working tree's: what runs is what a task on that commit would run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.repo_files import agents_paths, config_text
from config.agents_md import parse_agents_md
from config.effective import parse_effective_config
from config.loader import MAX_AGENTS_BYTES, MAX_MANIFEST_BYTES, Checkout, tree_files
from config.repo_config import CONFIG_PATH
from config.settings import Settings
from runner import host_git
from runner.auto_install import MANIFESTS

SYMLINK_MODE = "120000"
# `git cat-file --batch --follow-symlinks` answers a path it cannot give as a blob with one of
# these words (https://git-scm.com/docs/git-cat-file#_batch_output); no file, then.
NOT_A_FILE = ("missing", "dangling", "loop", "notdir", "symlink", "ambiguous")


def parse_tree(listing: bytes) -> list[dict[str, Any]]:
    """`git ls-tree -r -l -z` output as GitHub's tree entries (path, mode, type, sha, size)."""
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        path = raw_path.decode(errors="surrogateescape")
        entries.append({"path": path, "mode": mode, "type": kind, "sha": sha, "size": size})
    return entries


def parse_batch(answer: bytes) -> bytes | None:
    """The blob in a one-object `git cat-file --batch` answer; None when there is none."""
    header, _, rest = answer.partition(b"\n")
    words = header.decode(errors="replace").split()
    if len(words) != 3 or words[1] != "blob" or words[0] in NOT_A_FILE:
        return None
    return rest[: int(words[2])]


async def file_at(git_dir: Path, sha: str, path: str) -> bytes | None:
    """`path`'s bytes at `sha`, following symlinks inside the tree as a checkout would; None
    when the commit has no such file (or the link leads out of the tree)."""
    query = f"{sha}:{path}\n".encode()
    answer = await host_git.run(
        ["cat-file", "--batch", "--follow-symlinks"], git_dir=git_dir, stdin=query
    )
    return parse_batch(answer)


async def blob(git_dir: Path, sha: str, limit: int) -> str:
    """A blob's text, cut at `limit` bytes, undecodable bytes replaced (as a checkout's)."""
    data = await host_git.run(["cat-file", "blob", sha], git_dir=git_dir)
    return data[:limit].decode("utf-8", errors="replace")


async def read_commit_checkout(
    git_dir: Path, sha: str, settings: Settings | None = None
) -> Checkout:
    """The config and AGENTS.md files at `sha`, validated as `read_checkout` validates a
    working tree's; no `.github/gantry.yml` there means the defaults. Raises `ConfigError`."""
    listing = await host_git.run(["ls-tree", "-r", "-l", "-z", "--full-tree", sha], git_dir=git_dir)
    tree = parse_tree(listing)
    text = config_text(await file_at(git_dir, sha, CONFIG_PATH))
    parsed = parse_effective_config(text, settings, CONFIG_PATH)
    by_path: Mapping[str, Mapping[str, Any]] = {str(e["path"]): e for e in tree}
    docs = [
        parse_agents_md(await blob(git_dir, str(by_path[p]["sha"]), MAX_AGENTS_BYTES), p)
        for p in agents_paths(tree)
    ]
    manifests = {
        name: await blob(git_dir, str(entry["sha"]), MAX_MANIFEST_BYTES)
        for name in MANIFESTS
        if (entry := by_path.get(name)) is not None
        and entry["type"] == "blob"
        and entry["mode"] != SYMLINK_MODE
    }
    return Checkout(parsed, tuple(docs), tree_files(tree), manifests)
