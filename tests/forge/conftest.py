"""Shared set-up for the stand-in's own tests (the `forge` fixture comes from the root plugin)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio
from gidgethub.aiohttp import GitHubAPI

from forge.server import AppCredentials, Forge

OWNER = "octo-org"
REPO = "widgets"
SOURCE_FILES = {
    "README.md": "# widgets\n",
    "src/widgets/__init__.py": "VERSION = '1.0'\n",
    ".github/gantry.yml": "checks: [pytest -q]\n",
}
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.invalid",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.invalid",
}


@dataclass
class Seeded:
    """A repo with the App installed on it and a token for that installation."""

    forge: Forge
    app: AppCredentials
    installation_id: int
    token: str
    gh: GitHubAPI


@dataclass(frozen=True)
class GitResult:
    """Exit code and output of a git command."""

    returncode: int
    stdout: str
    stderr: str


async def run_git(*args: str, cwd: Path | None = None) -> GitResult:
    """Run real git without blocking the loop the stand-in serves on; never prompts."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return GitResult(proc.returncode or 0, out.decode(), err.decode())


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path → text) under `root`."""
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest_asyncio.fixture
async def seeded(forge: Forge, tmp_path: Path, session: aiohttp.ClientSession) -> Seeded:
    """`octo-org/widgets` from a folder, the App installed on it, a gidgethub client."""
    await forge.create_repo(OWNER, REPO, write_tree(tmp_path / "source", SOURCE_FILES))
    app = forge.register_app()
    installation_id = forge.install(app.app_id, OWNER, [REPO])
    token = forge.mint_token(installation_id)
    gh = GitHubAPI(session, "forge-tests", oauth_token=token, base_url=forge.api_url)
    return Seeded(forge, app, installation_id, token, gh)
