"""Task logs and patches are removed once older than the retention; nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

from runner.retention import prune_old_files

DAY = 86400.0


def make(path: Path, age_days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_old_files_go_and_recent_ones_stay(tmp_path: Path) -> None:
    now = 2_000_000_000.0
    old_log = make(tmp_path / "logs" / "task-1.log", 20, now)
    new_log = make(tmp_path / "logs" / "task-2.log", 1, now)
    old_patch = make(tmp_path / "patches" / "task-1.patch", 15, now)
    elsewhere = make(tmp_path / "gantry.db", 100, now)
    removed = prune_old_files([tmp_path / "logs", tmp_path / "patches", tmp_path / "nope"],
                              14 * DAY, now)  # fmt: skip
    assert removed == 2
    assert not old_log.exists()
    assert not old_patch.exists()
    assert new_log.exists()
    assert elsewhere.exists()


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    now = 2_000_000_000.0
    target = make(tmp_path / "keep" / "precious", 100, now)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "link").symlink_to(target)
    assert prune_old_files([tmp_path / "logs"], DAY, now) == 0
    assert target.exists()
