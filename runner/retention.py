"""Keep the data directory and the store bounded: task logs and patches older than the
retention go, and so do the records of deliveries long settled."""

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
# Delivery ids are kept to answer a redelivery `duplicate`, and effects so that a retry never
# posts twice; GitHub redelivers within 3 days (bot.missed_deliveries.RETENTION), so a month
# is plenty. A delivery whose inbox row remains (pending, or failed within the window, which a
# redelivery revives) keeps both; a handled one's inbox row (its payload) goes at once.
DELIVERY_RETENTION_S = 30 * 24 * 3600.0
SETTLED = "state = 'done' or (state = 'failed' and updated_at < {mark})"
IN_INBOX = "select delivery_id from inbox"


def delivery_prune_sql(mark: str) -> list[str]:
    """The statements, in order, that drop the delivery records settled before a time (each
    takes that time once, as `mark`). Pure."""
    return [
        f"delete from inbox where {SETTLED.format(mark=mark)}",  # noqa: S608 (ours)
        f"delete from delivery_effects where started_at < {mark} "  # noqa: S608 (ours)
        f"and delivery_id not in ({IN_INBOX})",
        f"delete from deliveries where received_at < {mark} "  # noqa: S608 (ours)
        f"and id not in ({IN_INBOX})",
    ]


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


# Drops the stored rows (of tasks ended, or deliveries received) before a time; how many went.
PruneStored = Callable[[float], Awaitable[int]]


async def prune_forever(
    data_dir: Path,
    max_age_s: float = RETENTION_S,
    stored: PruneStored | None = None,
    deliveries: PruneStored | None = None,
) -> None:
    """Prune now and every hour (and the store's copies, when `stored` is given, and its
    delivery records, when `deliveries` is); a failed pass is logged, never fatal."""
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
            await prune_rows(stored, now - max_age_s, "stored log chunk(s) and patch(es)")
        if deliveries is not None:
            await prune_rows(deliveries, now - DELIVERY_RETENTION_S, "settled delivery record(s)")
        await asyncio.sleep(PRUNE_INTERVAL_S)


async def prune_rows(prune: PruneStored, before: float, what: str) -> None:
    """One store pruning; a failure is logged (the store is away: the next pass tries again)."""
    try:
        rows = await prune(before)
        if rows:
            log.info("removed %d %s", rows, what)
    except Exception:
        log.exception("pruning %s failed", what)
