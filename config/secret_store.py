"""Server-side secrets (`SECRETS_FILE`): named values per repository pattern, never echoed."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from config.errors import GantryError
from config.repo_config import SECRET_NAME_RE, ConfigError, Problem, read_yaml

SECRETS_SOURCE = "SECRETS_FILE"
MAX_SECRETS_BYTES = 1024 * 1024
WILDCARD = "*"
PATTERN_RE = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9-]*/(?:\*|[A-Za-z0-9._-]+)")
VERSION_PREFIX = b"gantry-secret-v1\0"
VERSION_LENGTH = 16
PATTERN_HINT = "must be owner/name, owner/* or * (every repository)"
MODE_HINT = "{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
MISSING_HINT = "{repo} asks for secrets the server does not have: {names} (add them to {source})"


class InsecureSecretsFileError(GantryError):
    """The secrets file grants group or world permissions."""


class MissingSecretsError(GantryError):
    """A repository's config names secrets the store does not hold for it."""

    def __init__(self, repository: str, missing: Iterable[str]) -> None:
        self.repository = repository
        self.missing = tuple(sorted(missing))
        names = ", ".join(self.missing)
        super().__init__(MISSING_HINT.format(repo=repository, names=names, source=SECRETS_SOURCE))


@dataclass(frozen=True)
class Secret:
    """One secret for one task: its name, its value, and a version that reveals nothing."""

    name: str
    value: SecretStr
    version: str


@dataclass(frozen=True)
class SecretStore:
    """Secret values by repository pattern (lower-cased; GitHub names ignore case)."""

    scopes: Mapping[str, Mapping[str, SecretStr]] = field(default_factory=dict)

    def available(self, repository: str) -> dict[str, SecretStr]:
        """Every secret a repository may use: `*`, then `owner/*`, then `owner/name` wins."""
        owner = repository.lower().partition("/")[0]
        merged: dict[str, SecretStr] = {}
        for pattern in (WILDCARD, f"{owner}/*", repository.lower()):
            merged.update(self.scopes.get(pattern, {}))
        return merged

    def resolve(self, repository: str, names: Iterable[str]) -> tuple[Secret, ...]:
        """The named secrets for a repository, or `MissingSecretsError` naming what is absent."""
        available = self.available(repository)
        wanted = list(dict.fromkeys(names))
        missing = [name for name in wanted if name not in available]
        if missing:
            raise MissingSecretsError(repository, missing)
        return tuple(Secret(n, available[n], secret_version(n, available[n])) for n in wanted)


def secret_version(name: str, value: SecretStr) -> str:
    """A short hash of name and value: changes when the value does, for the cache key."""
    digest = hashlib.sha256(VERSION_PREFIX + name.encode() + b"\0")
    digest.update(value.get_secret_value().encode())
    return digest.hexdigest()[:VERSION_LENGTH]


def parse_secret_store(text: str | None, source: str = SECRETS_SOURCE) -> SecretStore:
    """Read the secrets file's YAML; problems name patterns and secrets, never values."""
    document = read_yaml(text, source, max_bytes=MAX_SECRETS_BYTES)
    problems: list[Problem] = []
    scopes: dict[str, dict[str, SecretStr]] = {}
    for pattern, values in document.data.items():
        line = document.lines[(pattern,)]
        key = pattern.lower()
        if not PATTERN_RE.fullmatch(pattern):
            problems.append(Problem(pattern, PATTERN_HINT, line))
        elif key in scopes:
            problems.append(Problem(pattern, "listed twice (names ignore case)", line))
        elif not isinstance(values, dict):
            problems.append(Problem(pattern, "must map secret names to values", line))
        else:
            scopes[key] = _scope(pattern, values, document.lines, problems)
    if problems:
        raise ConfigError(problems, source)
    return SecretStore(scopes)


def _scope(
    pattern: str,
    values: dict[str, object],
    lines: Mapping[tuple[str | int, ...], int],
    problems: list[Problem],
) -> dict[str, SecretStr]:
    """The secrets of one pattern, recording bad names and non-text values."""
    scope = {}
    for name, value in values.items():
        where, line = f"{pattern}.{name}", lines[(pattern, name)]
        if not SECRET_NAME_RE.fullmatch(name):
            problems.append(Problem(where, "must be an upper-case name ([A-Z_][A-Z0-9_]*)", line))
        elif not isinstance(value, str):
            problems.append(Problem(where, "the value must be text (quote it)", line))
        else:
            scope[name] = SecretStr(value)
    return scope


def check_file_mode(mode: int, path: Path) -> None:
    """Refuse a secrets file that anyone but its owner may read or change."""
    if stat.S_IMODE(mode) & 0o077:
        raise InsecureSecretsFileError(MODE_HINT.format(path=path, mode=stat.S_IMODE(mode)))


def read_secret_store(path: Path | None) -> SecretStore:
    """Load `SECRETS_FILE` after checking its permissions; no file configured, no secrets."""
    if path is None:
        return SecretStore()
    with path.open("rb") as handle:
        check_file_mode(os.fstat(handle.fileno()).st_mode, path)
        data = handle.read(MAX_SECRETS_BYTES + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([Problem("", "not UTF-8 text", 1)], str(path)) from None
    return parse_secret_store(text, str(path))
