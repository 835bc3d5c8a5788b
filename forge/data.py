"""Fetch GitHub's OpenAPI description and webhook examples (npm packages) into a cache dir."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The only place the pinned packages are recorded.
OPENAPI_PACKAGE = "@octokit/openapi"
OPENAPI_VERSION = "23.0.2"
OPENAPI_MEMBER = "generated/api.github.com.json"
WEBHOOKS_PACKAGE = "@octokit/webhooks-examples"
WEBHOOKS_VERSION = "7.6.1"
WEBHOOKS_MEMBER = "api.github.com/index.json"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "github-data"
NPM_TIMEOUT_SECONDS = 300


class GitHubDataError(RuntimeError):
    """The npm packages could not be fetched or unpacked."""


@dataclass(frozen=True)
class GitHubDataPaths:
    """Where the two data files live once fetched."""

    openapi: Path
    webhooks: Path


def data_paths(cache_dir: Path) -> GitHubDataPaths:
    """Return the versioned file paths inside `cache_dir`."""
    return GitHubDataPaths(
        openapi=cache_dir / f"openapi-{OPENAPI_VERSION}" / "api.github.com.json",
        webhooks=cache_dir / f"webhooks-examples-{WEBHOOKS_VERSION}" / "index.json",
    )


def ensure_github_data(cache_dir: Path | None = None) -> GitHubDataPaths:
    """Fetch the pinned packages with `npm pack` unless their files are already cached."""
    paths = data_paths(cache_dir or DEFAULT_CACHE_DIR)
    wanted = [
        (OPENAPI_PACKAGE, OPENAPI_VERSION, OPENAPI_MEMBER, paths.openapi),
        (WEBHOOKS_PACKAGE, WEBHOOKS_VERSION, WEBHOOKS_MEMBER, paths.webhooks),
    ]
    for package, version, member, target in wanted:
        if not target.is_file():
            _fetch_member(package, version, member, target)
    return paths


def _fetch_member(package: str, version: str, member: str, target: Path) -> None:
    """Run `npm pack` in a temp dir and extract one file of the tarball to `target`."""
    npm = shutil.which("npm")
    if npm is None:
        raise GitHubDataError(
            f"npm is not installed; it is needed once to fetch {package}@{version} "
            "(install Node.js/npm, then run `python -m forge.data`)"
        )
    with tempfile.TemporaryDirectory(prefix="forge-npm-") as tmp:
        result = subprocess.run(
            [npm, "pack", "--json", f"{package}@{version}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise GitHubDataError(f"npm pack {package}@{version} failed:\n{result.stderr}")
        tarball = Path(tmp) / json.loads(result.stdout)[0]["filename"]
        _extract_member(tarball, f"package/{member}", target)


def _extract_member(tarball: Path, name: str, target: Path) -> None:
    """Copy one member of an npm tarball to `target`, atomically."""
    with tarfile.open(tarball, "r:gz") as archive:
        source = archive.extractfile(name)
        if source is None:
            raise GitHubDataError(f"{tarball.name} has no file {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with source, partial.open("wb") as out:
            shutil.copyfileobj(source, out)
        partial.replace(target)


def main() -> int:
    """Fetch the data (CI runs `python -m forge.data`) and print where it is."""
    try:
        paths = ensure_github_data()
    except GitHubDataError as exc:
        print(f"forge.data: {exc}", file=sys.stderr)
        return 1
    print(f"openapi:  {paths.openapi}")
    print(f"webhooks: {paths.webhooks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
