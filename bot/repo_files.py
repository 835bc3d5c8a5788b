"""A repository's gantry.yml and AGENTS.md files at a ref, read through GitHub's REST API.

Tasks read them from the default branch only: a pull request must not be able to change
what runs with secrets. The config check reads a PR head's copies the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import posixpath
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from config.agents_md import AGENTS_FILE, AgentsDoc, parse_agents_md
from config.effective import parse_effective_config
from config.errors import GantryError
from config.loader import MAX_AGENTS_BYTES, SKIP_DIRS, Checkout, tree_files
from config.org_defaults import org_repo, org_source
from config.repo_config import (
    CONFIG_PATH,
    MAX_CONFIG_BYTES,
    ConfigError,
    ParsedConfig,
    Problem,
    RepoConfig,
)
from config.settings import Settings
from runner.auto_install import MANIFESTS

log = logging.getLogger(__name__)

CONTENTS_URL = "/repos/{+repo}/contents/{+path}{?ref}"
TREE_URL = "/repos/{+repo}/git/trees/{+ref}?recursive=1"
NOT_FOUND = 404
# Markdown is parsed on a thread of its own, one file at a time: a hostile AGENTS.md (a fork
# PR's, for the config check) parses at about 70 KB/s, and on the event loop that froze the
# whole server, webhook included. On this thread the loop keeps its turns, and however many
# files wait, one core at most goes to them.
MARKDOWN = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gantry-markdown")


class UnreadableFileError(GantryError):
    """GitHub has the file but did not send its content (over 1 MB, or not a plain file)."""


def file_bytes(item: Any, path: str) -> bytes | None:
    """The bytes in a contents-API answer; None for a directory, a submodule or a symlink.

    GitHub answers a symlink to a file in the repository with that file (`type: file`).
    """
    if not isinstance(item, Mapping) or item.get("type") != "file":
        return None
    # https://docs.github.com/rest/repos/contents: files of 1-100 MB come with encoding "none".
    if item.get("encoding") != "base64":
        raise UnreadableFileError(f"{path}: GitHub sent no content ({item.get('size')} bytes)")
    try:
        return base64.b64decode(str(item.get("content", "")))
    except binascii.Error:
        raise UnreadableFileError(f"{path}: content is not valid base64") from None


async def fetch_bytes(gh: GitHubAPI, repo: str, path: str, ref: str | None) -> bytes | None:
    """The bytes of `path` at `ref` (branch, tag or SHA; None: the default branch); None when
    there is no such file (or repository, or none this installation may read)."""
    url_vars = {"repo": repo, "path": path} | ({"ref": ref} if ref is not None else {})
    try:
        item = await gh.getitem(CONTENTS_URL, url_vars)
    except gidgethub.BadRequest as exc:
        if exc.status_code == NOT_FOUND:
            return None
        raise
    return file_bytes(item, path)


async def fetch_text(gh: GitHubAPI, repo: str, path: str, ref: str) -> str | None:
    """The text of `path` at `ref`, undecodable bytes replaced; None when there is no file."""
    data = await fetch_bytes(gh, repo, path, ref)
    return None if data is None else data.decode("utf-8", errors="replace")


def too_large(source: str = CONFIG_PATH) -> ConfigError:
    return ConfigError([Problem("", f"larger than {MAX_CONFIG_BYTES // 1024} KiB", 1)], source)


def config_text(data: bytes | None, source: str = CONFIG_PATH) -> str | None:
    """gantry.yml bytes as text; too large or not UTF-8 is a `ConfigError` at its line."""
    if data is None:
        return None
    if len(data) > MAX_CONFIG_BYTES:
        raise too_large(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([Problem("", "not UTF-8 text", line)], source) from None


async def fetch_org_config(gh: GitHubAPI, repo: str) -> tuple[str, str] | None:
    """The organisation's defaults for `repo`: the text and name of `.github/gantry.yml` in
    the owner's `.github` repository, at its default branch; None when there is none.

    GitHub answers 404 alike for a missing repository or file and for a private `.github`
    repository this installation does not cover: then there are no defaults."""
    org = org_repo(repo)
    if org is None:
        return None
    source = org_source(org)
    try:
        data = await fetch_bytes(gh, org, CONFIG_PATH, None)
    except UnreadableFileError:
        raise too_large(source) from None
    text = config_text(data, source)
    return None if text is None else (text, source)


async def fetch_parsed_config(
    gh: GitHubAPI, repo: str, ref: str, settings: Settings | None = None
) -> ParsedConfig | ConfigError:
    """gantry.yml at `ref` over the organisation's defaults, within the operator's ceilings,
    validated; no file means defaults; a broken one (either) is its error."""
    try:
        data = await fetch_bytes(gh, repo, CONFIG_PATH, ref)
    except UnreadableFileError:
        return too_large()  # only files over 1 MB come without their content
    try:
        org = await fetch_org_config(gh, repo)
        org_text, source = org if org is not None else (None, None)
        return parse_effective_config(config_text(data), settings, CONFIG_PATH, org_text, source)
    except ConfigError as exc:
        return exc


async def default_branch_config(
    gh: GitHubAPI, repo: str, default_branch: str, settings: Settings | None = None
) -> RepoConfig | ConfigError:
    """The config a task runs with: the default branch's gantry.yml, never a PR's."""
    parsed = await fetch_parsed_config(gh, repo, default_branch, settings)
    return parsed if isinstance(parsed, ConfigError) else parsed.config


def agents_paths(tree: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every AGENTS.md in a git tree listing, outside dependency and build trees."""
    found = []
    for entry in tree:
        path = str(entry.get("path", ""))
        # Symlinks (mode 120000) could point anywhere; loader.find_agents_files skips them too.
        if entry.get("type") != "blob" or entry.get("mode") == "120000":
            continue
        if posixpath.basename(path) != AGENTS_FILE:
            continue
        if not SKIP_DIRS.intersection(path.split("/")[:-1]):
            found.append(path)
    return sorted(found)


async def tree_listing(gh: GitHubAPI, repo: str, ref: str) -> list[Mapping[str, Any]]:
    """Every entry at `ref`, from one recursive tree listing."""
    listing = await gh.getitem(TREE_URL, {"repo": repo, "ref": ref})
    if listing.get("truncated"):
        # https://docs.github.com/rest/git/trees: over 100,000 entries or 7 MB are cut off.
        log.warning("%s@%s: tree listing truncated; deep files may be missed", repo, ref)
    return list(listing.get("tree", []))


async def find_agents_files(gh: GitHubAPI, repo: str, ref: str) -> list[str]:
    """Paths of the AGENTS.md files at `ref`."""
    return agents_paths(await tree_listing(gh, repo, ref))


async def fetch_agents_text(gh: GitHubAPI, repo: str, path: str, ref: str) -> str | None:
    """One AGENTS.md at `ref` (oversized files cut like a checkout's); None if absent."""
    try:
        data = await fetch_bytes(gh, repo, path, ref)
    except UnreadableFileError as exc:
        log.warning("%s@%s: %s", repo, ref, exc)
        return None
    if data is None:
        return None
    return data[:MAX_AGENTS_BYTES].decode("utf-8", errors="replace")


async def parse_agents(text: str, path: str) -> AgentsDoc:
    """`parse_agents_md` off the event loop (`MARKDOWN`)."""
    return await asyncio.get_running_loop().run_in_executor(MARKDOWN, parse_agents_md, text, path)


async def fetch_agents_doc(gh: GitHubAPI, repo: str, path: str, ref: str) -> AgentsDoc | None:
    """One AGENTS.md at `ref`, parsed; None if absent."""
    text = await fetch_agents_text(gh, repo, path, ref)
    return None if text is None else await parse_agents(text, path)


async def fetch_checkout(
    gh: GitHubAPI, repo: str, ref: str, settings: Settings | None = None
) -> Checkout | ConfigError:
    """The config and every AGENTS.md at `ref`, as `gantry config validate` reads a checkout."""
    parsed = await fetch_parsed_config(gh, repo, ref, settings)
    if isinstance(parsed, ConfigError):
        return parsed
    tree = await tree_listing(gh, repo, ref)
    docs = [await fetch_agents_doc(gh, repo, p, ref) for p in agents_paths(tree)]
    files = tree_files(tree)
    # The root manifests tell auto_install the package manager and the workspaces.
    manifests = {
        name: text
        for name in MANIFESTS
        if name in files and (text := await fetch_text(gh, repo, name, ref)) is not None
    }
    found = tuple(doc for doc in docs if doc is not None)
    return Checkout(parsed, found, files=files, manifests=manifests)


async def default_branch_checkout(
    gh: GitHubAPI, repo: str, default_branch: str, settings: Settings | None = None
) -> Checkout | ConfigError:
    """What a task runs with: the default branch's config and AGENTS.md files."""
    return await fetch_checkout(gh, repo, default_branch, settings)
