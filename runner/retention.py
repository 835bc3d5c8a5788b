"""Keep the data directory bounded: task logs and patches older than the retention go."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
RETENTION_S = 14 * 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0
PRUNED_DIRS = ("logs", "patches")


def prune_old_files(directories: Iterable[Path], max_age_s: float, now: float) -> int:
    """Delete regular files not modified for `max_age_s`; how many went."""
    removed = 0
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > max_age_s:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


async def prune_forever(data_dir: Path, max_age_s: float = RETENTION_S) -> None:
    """Prune now and every hour; a failed pass is logged, never fatal."""
    directories = [data_dir / name for name in PRUNED_DIRS]
    while True:
        try:
            removed = await asyncio.to_thread(prune_old_files, directories, max_age_s, time.time())
            if removed:
                log.info("removed %d task file(s) older than %.0f days", removed, max_age_s / 86400)
        except OSError:
            log.exception("pruning old task files failed")
        await asyncio.sleep(PRUNE_INTERVAL_S)
