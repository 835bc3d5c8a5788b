"""The task page, `/tasks/<id>?sig=…`: phases, the live log and the diff, behind a signed link."""

from __future__ import annotations

import hashlib
import hmac
import html
from pathlib import Path

from runner.results import Phase
from runner.store import ACTIVE_STATES, Task

SIGNATURE_CHARS = 32
MAX_SHOWN_BYTES = 1024 * 1024
LOGS_DIR, PATCHES_DIR = "logs", "patches"
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:12px}"
    "td,th{padding:.2em 1em;text-align:left}"
)


def signature(secret: str, task_id: int) -> str:
    """The link's proof: only someone Gantry gave the link to can read the page."""
    digest = hmac.new(secret.encode(), f"gantry-task:{task_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:SIGNATURE_CHARS]


def signed_url(public_url: str, secret: str, task_id: int) -> str:
    return f"{public_url.rstrip('/')}/tasks/{task_id}?sig={signature(secret, task_id)}"


def valid(secret: str, task_id: int, given: str) -> bool:
    return hmac.compare_digest(signature(secret, task_id), given)


def log_path(data_dir: Path, task_id: int) -> Path:
    return data_dir / LOGS_DIR / f"task-{task_id}.log"


def patch_path(data_dir: Path, task_id: int) -> Path:
    return data_dir / PATCHES_DIR / f"task-{task_id}.patch"


def read_tail(path: Path, limit: int = MAX_SHOWN_BYTES) -> str:
    """The end of a file (logs are capped when written; this caps what a page shows)."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", "replace")


def render(task: Task, phases: list[Phase], log: str, patch: str) -> str:
    """The page; every piece of text from a task is escaped."""
    rows = "".join(
        f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(p.status.value)}</td>"
        f"<td>{'' if p.seconds is None else f'{p.seconds:.1f} s'}</td>"
        f"<td>{html.escape(p.note)}</td></tr>"
        for p in phases
    )
    refresh = '<meta http-equiv="refresh" content="5">' if task.state in ACTIVE_STATES else ""
    title = f"Gantry task #{task.id}: {task.repo}#{task.number}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{refresh}"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>State: <b>{html.escape(task.state.value)}</b>. "
        f"Requested by @{html.escape(task.requester)}:</p>"
        f"<pre>{html.escape(task.request)}</pre>"
        f"<h2>Phases</h2><table><tr><th>phase</th><th>status</th><th>time</th><th></th></tr>"
        f"{rows}</table><h2>Log</h2><pre>{html.escape(log) or '(empty)'}</pre>"
        f"<h2>Diff</h2><pre>{html.escape(patch) or '(none)'}</pre></body></html>"
    )
