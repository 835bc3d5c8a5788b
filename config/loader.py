"""A checkout's effective config: gantry.yml plus every AGENTS.md, and the commands they give."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from config.agents_md import (
    AGENTS_FILE,
    AgentsDoc,
    Command,
    Origin,
    checks_for_changes,
    parse_agents_md,
    setup_from_docs,
)
from config.effective import parse_effective_config
from config.provenance import Layer
from config.repo_config import (
    CONFIG_PATH,
    MAX_CONFIG_BYTES,
    ConfigError,
    ParsedConfig,
    Problem,
)
from config.settings import Settings
from runner.auto_install import MANIFESTS, Detection, detect_installs

# Trees that hold dependencies or build output, never a maintainer's AGENTS.md.
SKIP_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".nox", ".mypy_cache"}
    | {".pytest_cache", ".ruff_cache", "vendor", "target", "dist", "build", ".next", ".gradle"}
)
MAX_AGENTS_BYTES = 512 * 1024
MAX_MANIFEST_BYTES = 256 * 1024
MAX_LISTED_FILES = 100_000
Source = Literal["config", "org", "AGENTS.md", "auto", "none"]


@dataclass(frozen=True)
class CommandPlan:
    """What runs in each phase, every command with its origin, and where each list came from."""

    setup: tuple[Command, ...]
    maintenance: tuple[Command, ...]
    checks: tuple[Command, ...]
    setup_source: Source
    checks_source: Source
    # What `auto_install` found when it was asked (setup from neither config nor AGENTS.md).
    detection: Detection | None = None


@dataclass(frozen=True)
class Checkout:
    """A checkout's validated config, its AGENTS.md files and (when known) its file list.

    `files` (repo-relative paths) and `manifests` (root package.json/pyproject.toml text) feed
    the automatic install; without `files` there is no automatic install.
    """

    parsed: ParsedConfig
    docs: tuple[AgentsDoc, ...]
    files: tuple[str, ...] | None = None
    manifests: Mapping[str, str] = field(default_factory=dict)

    def plan(self, changed_files: Sequence[str] | None = None) -> CommandPlan:
        """The commands for a task that changed `changed_files` (None: before any change)."""
        return plan_commands(self.parsed, self.docs, changed_files, self.files, self.manifests)

    def checks_follow_changes(self) -> bool:
        """Whether the changed files can pick the checks: no `checks` in the config, and an
        AGENTS.md below the root (a root one alone gives its checks whatever changed)."""
        return self.parsed.config.checks is None and any(doc.directory for doc in self.docs)


def script_commands(parsed: ParsedConfig, key: str) -> tuple[Command, ...]:
    """A config script (`setup`, `maintenance`) as one command at the line of its key."""
    script = getattr(parsed.config, key)
    if script is None or not script.strip():
        return ()
    source, line = parsed.set_in(key) or (parsed.source, 1)
    return (Command(script.strip(), Origin(source, line)),)


def config_checks(parsed: ParsedConfig) -> tuple[Command, ...]:
    """The config's `checks`, each at its own line."""
    checks = parsed.config.checks or ()
    return tuple(
        Command(text, Origin(*(parsed.set_in("checks", i) or (parsed.source, 1))))
        for i, text in enumerate(checks)
    )


def plan_commands(
    parsed: ParsedConfig,
    docs: Sequence[AgentsDoc],
    changed_files: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    manifests: Mapping[str, str] | None = None,
) -> CommandPlan:
    """Explicit `setup`/`checks` in the repository's config win; then AGENTS.md; then the
    organisation's defaults; then (with `auto_install` on and the file list known) the
    lockfiles found in `files`."""
    setup, setup_source = _chosen(
        script_commands(parsed, "setup"), _origin(parsed, "setup"), setup_from_docs(docs)
    )
    detection = None
    if setup_source == "none" and parsed.config.auto_install and files is not None:
        detection = detect_installs(files, manifests)
        setup = auto_commands(detection)
        setup_source = "auto" if setup else "none"
    checks, checks_source = _chosen(
        config_checks(parsed),
        _origin(parsed, "checks"),
        checks_for_changes(docs, changed_files),
    )
    maintenance = script_commands(parsed, "maintenance")
    return CommandPlan(setup, maintenance, checks, setup_source, checks_source, detection)


def auto_commands(detection: Detection) -> tuple[Command, ...]:
    """The detected installs as setup commands, each at the file that called for it."""
    return tuple(Command(i.command, Origin(i.source, 1)) for i in detection.installs)


def _origin(parsed: ParsedConfig, key: str) -> Source:
    """Who set a config key: the repository's file (`config`), the organisation's, nobody."""
    if getattr(parsed.config, key) is None:
        return "none"
    provenance = parsed.provenance
    if provenance is not None and provenance.layer_of((key,)) is Layer.ORG:
        return "org"
    return "config"


def _chosen(
    from_config: tuple[Command, ...], origin: Source, from_docs: tuple[Command, ...]
) -> tuple[tuple[Command, ...], Source]:
    """The repository config's commands when it sets the key at all (even empty); else
    AGENTS.md's; else the organisation's."""
    if origin == "config" or (origin == "org" and not from_docs):
        return from_config, origin
    return from_docs, "AGENTS.md" if from_docs else "none"


def find_agents_files(root: Path) -> list[str]:
    """Repo-relative paths of every AGENTS.md, skipping dependency and build trees."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        path = Path(directory) / AGENTS_FILE
        # A symlinked AGENTS.md could point outside the checkout.
        if AGENTS_FILE in files and not path.is_symlink():
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


def list_files(root: Path) -> tuple[str, ...]:
    """Repo-relative paths of the checkout's files (dependency trees skipped, bounded)."""
    found: list[str] = []
    for path in _walk_files(root):
        found.append(path)
        if len(found) >= MAX_LISTED_FILES:
            break
    return tuple(sorted(found))


def _walk_files(root: Path) -> Iterator[str]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        base = Path(directory).relative_to(root)
        for name in sorted(files):
            yield (base / name).as_posix()


def tree_files(tree: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The file paths of a GitHub git-tree listing, as `list_files` gives a checkout's."""
    return tuple(
        sorted(
            str(entry["path"])
            for entry in tree
            if entry.get("type") == "blob"
            and not SKIP_DIRS.intersection(str(entry.get("path", "")).split("/")[:-1])
        )
    )[:MAX_LISTED_FILES]


def read_manifests(root: Path) -> dict[str, str]:
    """The root files that refine the automatic install (package.json, pyproject.toml, ...)."""
    manifests = {}
    for name in MANIFESTS:
        path = root / name
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES)
            manifests[name] = data.decode("utf-8", errors="replace")
    return manifests


def read_agents_docs(root: Path, files: Sequence[str]) -> tuple[AgentsDoc, ...]:
    """Parse each AGENTS.md (undecodable bytes replaced, oversized files cut)."""
    docs = []
    for name in files:
        with (root / name).open("rb") as handle:
            text = handle.read(MAX_AGENTS_BYTES).decode("utf-8", errors="replace")
        docs.append(parse_agents_md(text, name))
    return tuple(docs)


def read_config_text(root: Path) -> str | None:
    """The text of `.github/gantry.yml`, None when absent; unreadable text is a `ConfigError`."""
    return read_config_file(root / CONFIG_PATH)


def read_config_file(path: Path, source: str = CONFIG_PATH) -> str | None:
    """A config file's text, None when absent; too large or not UTF-8 is a `ConfigError`."""
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem("", f"larger than {MAX_CONFIG_BYTES // 1024} KiB", 1)], source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([Problem("", "not UTF-8 text", line)], source) from None


def read_checkout(
    root: Path,
    settings: Settings | None = None,
    org_text: str | None = None,
    org_source: str | None = None,
) -> Checkout:
    """Read and validate a checkout's config (over the organisation's, when given, within
    the operator's ceilings) and AGENTS.md files, or raise `ConfigError`."""
    parsed = parse_effective_config(
        read_config_text(root), settings, CONFIG_PATH, org_text, org_source
    )
    docs = read_agents_docs(root, find_agents_files(root))
    return Checkout(parsed, docs, list_files(root), read_manifests(root))
