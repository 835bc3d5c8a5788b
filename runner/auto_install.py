"""Automatic dependency install: which package managers' installs a repository's files call for.

A pure function over the repository's file list (and, when the caller has them, the text of
the root `package.json` and `pyproject.toml`). At most one Node.js and one Python install, both
run at the repository root:

- Node.js: `pnpm-lock.yaml` before `yarn.lock` before `package-lock.json` (a stray
  `package-lock.json` next to another lockfile is the usual accident), unless the root
  `package.json` names its `packageManager`, which then wins. npm/yarn workspaces
  (`package.json` "workspaces") and pnpm workspaces (`pnpm-workspace.yaml`) are installed by
  that one root install; lockfiles inside workspace members are ignored.
- Python: `poetry.lock`, then `Pipfile.lock`, then `requirements*.txt` (all of them, the plain
  `requirements.txt` first), then a `pyproject.toml` that declares a project (`pip install -e .`).
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PACKAGE_JSON = "package.json"
PYPROJECT = "pyproject.toml"
PNPM_WORKSPACE = "pnpm-workspace.yaml"
YARN_BERRY_MARKER = ".yarnrc.yml"
# Root files whose text refines the detection; callers that can read them pass them in.
MANIFESTS = (PACKAGE_JSON, PYPROJECT, PNPM_WORKSPACE)
NODE_LOCKFILES = {
    "pnpm-lock.yaml": "pnpm",
    "yarn.lock": "yarn",
    "package-lock.json": "npm",
}
PYTHON_LOCKFILES = ("poetry.lock", "Pipfile.lock")
REQUIREMENTS_RE = re.compile(r"requirements[\w.-]*\.txt")
PROJECT_TABLE_RE = re.compile(r"^\[(project|build-system)\]", re.MULTILINE)
PNPM_PACKAGE_RE = re.compile(r"^\s*-\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


@dataclass(frozen=True)
class Install:
    """One install command and the file(s) that called for it."""

    command: str
    reason: str
    source: str

    def describe(self) -> str:
        """`npm ci (package-lock.json)`, as the task log and `validate` show it."""
        return f"{self.command} ({self.reason})"


@dataclass(frozen=True)
class Detection:
    """What the repository's files call for, and what was found but not used (with why)."""

    installs: tuple[Install, ...]
    workspaces: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines for the task log and `gantry config validate`."""
        if not self.installs:
            return ["no lockfile or Python project found at the repository root"]
        found = [f"detected: {install.describe()}" for install in self.installs]
        if self.workspaces:
            found.append(f"workspaces installed from the root: {', '.join(self.workspaces)}")
        return found + [f"ignored: {note}" for note in self.ignored]


def detect_installs(files: Iterable[str], manifests: Mapping[str, str] | None = None) -> Detection:
    """The installs a repository calls for, from its repo-relative file paths."""
    paths = frozenset(p.strip("/") for p in files)
    manifests = manifests or {}
    package = _json_object(manifests.get(PACKAGE_JSON))
    patterns = _workspace_patterns(package, manifests.get(PNPM_WORKSPACE))
    members = _workspace_members(paths, patterns)
    node, ignored = _node_install(paths, package)
    if node is not None:
        ignored += _member_lockfiles(paths, members)
    python, python_ignored = _python_install(paths, manifests.get(PYPROJECT))
    installs = tuple(i for i in (node, python) if i is not None)
    return Detection(installs, members if node else (), tuple(ignored + python_ignored))


def _node_install(
    paths: frozenset[str], package: Mapping[str, Any]
) -> tuple[Install | None, list[str]]:
    """The root's Node.js install: the declared package manager, else the lockfile precedence."""
    present = [(lock, tool) for lock, tool in NODE_LOCKFILES.items() if lock in paths]
    if not present:
        return None, []
    declared = str(package.get("packageManager", "")).split("@", 1)[0]
    chosen = next(((lock, tool) for lock, tool in present if tool == declared), present[0])
    lock, tool = chosen
    reason = lock if tool != declared else f"{lock}, packageManager {declared}"
    ignored = [f"{other} (the root uses {tool})" for other, _ in present if other != lock]
    return Install(_node_command(tool, paths), reason, lock), ignored


def _node_command(tool: str, paths: frozenset[str]) -> str:
    """The frozen install of each tool (yarn 2+ is told apart by its `.yarnrc.yml`)."""
    if tool == "pnpm":
        return "pnpm install --frozen-lockfile"
    if tool == "yarn":
        if YARN_BERRY_MARKER in paths:
            return "yarn install --immutable"
        return "yarn install --frozen-lockfile"
    return "npm ci"


def _python_install(
    paths: frozenset[str], pyproject: str | None
) -> tuple[Install | None, list[str]]:
    """The root's Python install: the first of poetry, pipenv, requirements, pyproject."""
    requirements = sorted(
        (p for p in paths if "/" not in p and REQUIREMENTS_RE.fullmatch(p)),
        key=lambda p: (p != "requirements.txt", p),
    )
    candidates: list[tuple[Install, str]] = []
    if "poetry.lock" in paths:
        install = Install("poetry install", "poetry.lock", "poetry.lock")
        candidates.append((install, "poetry.lock"))
    if "Pipfile.lock" in paths:
        install = Install("pipenv install --deploy", "Pipfile.lock", "Pipfile.lock")
        candidates.append((install, "Pipfile.lock"))
    if requirements:
        command = "pip install " + " ".join(f"-r {name}" for name in requirements)
        names = ", ".join(requirements)
        candidates.append((Install(command, names, requirements[0]), names))
    if PYPROJECT in paths and _declares_project(pyproject):
        install = Install("pip install -e .", "pyproject.toml without a lock", PYPROJECT)
        candidates.append((install, PYPROJECT))
    if not candidates:
        return None, []
    (chosen, used), rest = candidates[0], candidates[1:]
    return chosen, [f"{what} (the root uses {used})" for _, what in rest]


def _declares_project(pyproject: str | None) -> bool:
    """Whether pyproject.toml builds a package (unknown text: assume it does)."""
    return pyproject is None or PROJECT_TABLE_RE.search(pyproject) is not None


def _json_object(text: str | None) -> Mapping[str, Any]:
    """A JSON object's content, or empty for absent or unreadable text."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _workspace_patterns(package: Mapping[str, Any], pnpm_workspace: str | None) -> list[str]:
    """Workspace globs from package.json (list or `{packages: [...]}`) and pnpm-workspace.yaml."""
    declared = package.get("workspaces", [])
    if isinstance(declared, dict):
        declared = declared.get("packages", [])
    patterns = [p for p in declared if isinstance(p, str)] if isinstance(declared, list) else []
    if pnpm_workspace:
        patterns += PNPM_PACKAGE_RE.findall(pnpm_workspace)
    return [p.strip("./") for p in patterns if not p.startswith("!")]


def _workspace_members(paths: frozenset[str], patterns: Sequence[str]) -> tuple[str, ...]:
    """Directories with a package.json that a workspace glob names."""
    directories = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == PACKAGE_JSON}
    return tuple(
        sorted(d for d in directories if d and any(fnmatch.fnmatch(d, p) for p in patterns))
    )


def _member_lockfiles(paths: frozenset[str], members: Sequence[str]) -> list[str]:
    """Lockfiles inside workspace members: the root install covers those packages."""
    return [
        f"{member}/{lock} (a workspace member; the root install covers it)"
        for member in members
        for lock in NODE_LOCKFILES
        if f"{member}/{lock}" in paths
    ]
