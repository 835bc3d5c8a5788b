"""Fetching the pinned npm packages into the cache dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forge.data import (
    OPENAPI_VERSION,
    WEBHOOKS_VERSION,
    GitHubDataError,
    data_paths,
    ensure_github_data,
)


def test_paths_are_versioned(tmp_path: Path) -> None:
    paths = data_paths(tmp_path)
    assert OPENAPI_VERSION in str(paths.openapi)
    assert WEBHOOKS_VERSION in str(paths.webhooks)


def test_cached_files_are_used_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = ensure_github_data()
    for source, target in zip(
        (cached.openapi, cached.webhooks),
        (data_paths(tmp_path).openapi, data_paths(tmp_path).webhooks),
        strict=True,
    ):
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert ensure_github_data(tmp_path) == data_paths(tmp_path)


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(GitHubDataError, match="npm is not installed"):
        ensure_github_data(tmp_path / "cache")
