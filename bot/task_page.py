"""The task page, `/tasks/<id>?sig=…`: phases, the live log and the diff, behind a signed link."""

from __future__ import annotations

import hashlib
import hmac
import html
from pathlib import Path
from typing import Any

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


def usage_section(usage: dict[str, Any] | None) -> str:
    """Model usage and the agent's session (requests and answers, redacted by the gateway)."""
    if not usage:
        return ""
    notes = [usage.get("line"), usage.get("budget_message"), usage.get("provider_error")]
    notes += list(usage.get("errors") or [])[:20]
    listed = "".join(f"<li>{html.escape(str(n))}</li>" for n in notes if n)
    turns = "".join(exchange_html(n, e) for n, e in enumerate(usage.get("exchanges") or [], 1))
    dropped = int(usage.get("exchanges_dropped") or 0)
    more = f"<p>({dropped} earlier exchanges not kept)</p>" if dropped else ""
    return (
        f"<h2>Model usage</h2><ul>{listed}</ul>"
        f"<h2>Agent session</h2>{more}{turns or '<p>(no model requests)</p>'}"
    )


def exchange_html(number: int, exchange: dict[str, Any]) -> str:
    """One request and its answer."""
    head = (
        f"{number}. {exchange.get('provider')} {exchange.get('model') or ''} → "
        f"{exchange.get('status')} ({exchange.get('input_tokens')} in / "
        f"{exchange.get('output_tokens')} out)"
    )
    tools = "\n".join(str(t) for t in exchange.get("tool_calls") or [])
    parts = [("request", exchange.get("request")), ("answer", exchange.get("answer"))]
    parts.append(("tool calls", tools))
    body = "".join(
        f"<p>{label}:</p><pre>{html.escape(str(text))}</pre>" for label, text in parts if text
    )
    return f"<h3>{html.escape(head)}</h3>{body}"


def render(
    task: Task, phases: list[Phase], log: str, patch: str, usage: dict[str, Any] | None = None
) -> str:
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
        f"{rows}</table>{usage_section(usage)}"
        f"<h2>Log</h2><pre>{html.escape(log) or '(empty)'}</pre>"
        f"<h2>Diff</h2><pre>{html.escape(patch) or '(none)'}</pre></body></html>"
    )
