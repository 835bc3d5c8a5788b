"""Organisation-wide defaults: `.github/gantry.yml` in the owner's `.github` repository.

A repository's own file overrides it key by key: mappings merge, everything else (lists,
text, numbers) replaces. Pure: the merge remembers which layer set each value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from config.repo_config import CONFIG_PATH, KeyPath

ORG_REPO = ".github"
# Setting one of these drops what a lower layer set for the others: an organisation's
# `agent.preset` must not clash with a repository's `agent.command`.
EXCLUSIVE: dict[KeyPath, tuple[str, ...]] = {
    ("agent", "command"): ("preset", "model"),
    ("agent", "preset"): ("command",),
}
Origins = dict[KeyPath, int]


def org_repo(repo: str) -> str | None:
    """`acme/api` → `acme/.github`; None for the `.github` repository itself (its own file
    is both the defaults and its config)."""
    owner, _, name = repo.partition("/")
    return None if name.lower() == ORG_REPO else f"{owner}/{ORG_REPO}"


def org_source(org_repository: str) -> str:
    """How messages name the organisation's file: `acme/.github:.github/gantry.yml`."""
    return f"{org_repository}:{CONFIG_PATH}"


def merge_layers(layers: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], Origins]:
    """Merge config data, lowest layer first; and the layer index that set each value."""
    merged: dict[str, Any] = {}
    origins: Origins = {}
    for index, data in enumerate(layers):
        _merge_into(merged, data, (), index, origins)
    return merged, origins


def _merge_into(
    target: dict[str, Any], data: Mapping[str, Any], path: KeyPath, index: int, origins: Origins
) -> None:
    for key, value in data.items():
        key_path = (*path, key)
        for other in EXCLUSIVE.get(key_path, ()):
            target.pop(other, None)
            _forget((*path, other), origins)
        if isinstance(value, Mapping) and value:
            if not isinstance(target.get(key), dict):
                target[key] = {}
                _forget(key_path, origins)
            _merge_into(target[key], value, key_path, index, origins)
            continue
        _forget(key_path, origins)
        target[key] = _copy(value)
        origins[key_path] = index


def _forget(path: KeyPath, origins: Origins) -> None:
    """Drop the origins of `path` and everything below it (a lower layer's, now replaced)."""
    for known in [p for p in origins if p[: len(path)] == path]:
        del origins[known]


def _copy(value: Any) -> Any:
    """A copy of plain YAML data, so later layers never change an earlier one's."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
