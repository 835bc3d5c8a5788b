"""Keep the data directory bounded: task logs and patches older than the retention go."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
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


# Drops the stored logs and patches of tasks that ended before a time; how many rows went.
PruneStored = Callable[[float], Awaitable[int]]


async def prune_forever(
    data_dir: Path, max_age_s: float = RETENTION_S, stored: PruneStored | None = None
) -> None:
    """Prune now and every hour (and the store's copies, when `stored` is given); a failed
    pass is logged, never fatal."""
    directories = [data_dir / name for name in PRUNED_DIRS]
    while True:
        now = time.time()
        try:
            removed = await asyncio.to_thread(prune_old_files, directories, max_age_s, now)
            if removed:
                log.info("removed %d task file(s) older than %.0f days", removed, max_age_s / 86400)
        except OSError:
            log.exception("pruning old task files failed")
        if stored is not None:
            try:
                rows = await stored(now - max_age_s)
                if rows:
                    log.info("removed %d stored log chunk(s) and patch(es) of old tasks", rows)
            except Exception:  # the store is away: the next pass tries again
                log.exception("pruning stored task logs failed")
        await asyncio.sleep(PRUNE_INTERVAL_S)
