"""The task page, `/tasks/<id>?sig=…`: phases, the live log, checks and the diff, behind a
signed link."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.attempt_page import attempts_section
from runner.results import Phase
from runner.task import ACTIVE_STATES, Task

SIGNATURE_CHARS = 32
MAX_SHOWN_BYTES = 1024 * 1024
LOGS_DIR, PATCHES_DIR = "logs", "patches"
CHECKS_PREFIX = "[checks] "
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:12px}"
    "td,th{padding:.2em 1em;text-align:left}"
)
# The page's only script: follow the log stream (SSE) and update state, phases and checks.
# Text from the stream only ever becomes text nodes (textContent), never markup.
LIVE_SCRIPT = """(function () {
  var log = document.getElementById("log"), checks = document.getElementById("checks");
  var state = document.getElementById("state"), phases = document.getElementById("phases");
  var live = document.getElementById("live");
  function add(pre, lines) {
    if (!lines.length) return;
    var bottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    pre.appendChild(document.createTextNode(lines.join("\\n") + "\\n"));
    if (bottom) window.scrollTo(0, document.body.scrollHeight);
  }
  function cell(row, text) {
    row.insertCell().textContent = text;
  }
  var source = new EventSource(__STREAM_URL__);
  source.onopen = function () { live.textContent = "live"; };
  source.onerror = function () { live.textContent = "reconnecting…"; };
  source.addEventListener("lines", function (e) {
    var lines = JSON.parse(e.data).lines;
    add(log, lines);
    add(checks, lines.filter(function (l) { return l.indexOf("[checks] ") === 0; }));
  });
  source.addEventListener("phases", function (e) {
    while (phases.rows.length > 1) phases.deleteRow(1);
    JSON.parse(e.data).phases.forEach(function (p) {
      var row = phases.insertRow();
      cell(row, p.name); cell(row, p.status);
      cell(row, p.seconds === null ? "" : p.seconds.toFixed(1) + " s"); cell(row, p.note);
    });
  });
  source.addEventListener("state", function (e) {
    state.textContent = JSON.parse(e.data).state;
  });
  source.addEventListener("end", function () {
    source.close();
    live.textContent = "ended";
    location.reload();
  });
})();"""


def signature(secret: str, task_id: int) -> str:
    """The link's proof: only someone Gantry gave the link to can read the page."""
    return _sign(secret, f"gantry-task:{task_id}")


def repo_signature(secret: str, repo: str) -> str:
    """The proof for a repository's task list (a message no task signature can collide with)."""
    return _sign(secret, f"gantry-repo:{repo}")


def _sign(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256)
    return digest.hexdigest()[:SIGNATURE_CHARS]


def signed_url(public_url: str, secret: str, task_id: int) -> str:
    return f"{public_url.rstrip('/')}/tasks/{task_id}?sig={signature(secret, task_id)}"


def signed_repo_url(public_url: str, secret: str, repo: str) -> str:
    """The signed link to `owner/name`'s task list (for the progress comment)."""
    return f"{public_url.rstrip('/')}/{repo_list_path(repo)}?sig={repo_signature(secret, repo)}"


def repo_list_path(repo: str) -> str:
    """`repos/<owner>/<name>/tasks`, relative to the server's root."""
    owner, _, name = repo.partition("/")
    return f"repos/{quote(owner, safe='')}/{quote(name, safe='')}/tasks"


def repo_list_link(secret: str, repo: str) -> str:
    """The signed link to `repo`'s task list relative to a task page (`tasks/<id>`), so it
    works whatever address or prefix the server is reached at."""
    return f"../{repo_list_path(repo)}?sig={quote(repo_signature(secret, repo), safe='')}"


def repo_anchor(repo: str, link: str | None) -> str:
    if link is None:
        return ""
    return f'<p><a href="{html.escape(link)}">All tasks in {html.escape(repo)}</a></p>'


def valid(secret: str, task_id: int, given: str) -> bool:
    return hmac.compare_digest(signature(secret, task_id), given)


def valid_repo(secret: str, repo: str, given: str) -> bool:
    return hmac.compare_digest(repo_signature(secret, repo), given)


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


@dataclass(frozen=True)
class LogSnapshot:
    """The complete lines at the end of a log, and the byte offset where the stream goes on."""

    text: str
    end: int


def read_log_snapshot(path: Path, limit: int = MAX_SHOWN_BYTES) -> LogSnapshot:
    """Whole lines only: a line being written when the page is made comes with the stream."""
    if not path.is_file():
        return LogSnapshot("", 0)
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - limit)
        handle.seek(start)
        data = handle.read(size - start)
    return snapshot_of(data, start)


def snapshot_of(data: bytes, start: int) -> LogSnapshot:
    """`data` read from byte `start`: cut after its last newline (and before its first, when
    the read began mid-line)."""
    end = data.rfind(b"\n") + 1
    first = data.find(b"\n") + 1 if start > 0 else 0
    first = min(first, end)
    return LogSnapshot(data[first:end].decode("utf-8", "replace"), start + end)


def phase_lines(log: str, prefix: str = CHECKS_PREFIX) -> str:
    """The log lines of one phase (the checks' commands and their output)."""
    return "".join(line for line in log.splitlines(keepends=True) if line.startswith(prefix))


def usage_section(usage: dict[str, Any] | None) -> str:
    """Model usage and the agent's session (requests and answers, redacted by the gateway)."""
    if not usage or "line" not in usage:
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


def phase_rows(phases: list[Phase]) -> str:
    """The phases table's rows (the live script rebuilds them from the stream)."""
    return "".join(
        f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(p.status.value)}</td>"
        f"<td>{'' if p.seconds is None else f'{p.seconds:.1f} s'}</td>"
        f"<td>{html.escape(p.note)}</td></tr>"
        for p in phases
    )


def phase_json(phases: list[Phase]) -> list[dict[str, Any]]:
    """The phases as the stream sends them."""
    return [
        {"name": p.name, "status": p.status.value, "seconds": p.seconds, "note": p.note}
        for p in phases
    ]


def live_script(stream_url: str, nonce: str) -> str:
    """The script that follows `stream_url`; the URL is JSON with `<` escaped, so it cannot
    close the script element."""
    literal = json.dumps(stream_url).replace("<", "\\u003c")
    source = LIVE_SCRIPT.replace("__STREAM_URL__", literal, 1)
    return f'<script nonce="{html.escape(nonce)}">{source}</script>'


def stream_path(task_id: int, sig: str, offset: int) -> str:
    """The stream's URL relative to the page (so it works behind any prefix or host name)."""
    return f"{task_id}/log?sig={quote(sig, safe='')}&offset={offset}"


def render(
    task: Task,
    phases: list[Phase],
    log: str,
    patch: str,
    usage: dict[str, Any] | None = None,
    *,
    stream: str | None = None,
    nonce: str = "",
    repo_link: str | None = None,
) -> str:
    """The page; every piece of text from a task is escaped. With `stream` (a running task)
    the log, phases and state follow it live; with `repo_link`, it links to the repository's
    task list."""
    title = f"Gantry task #{task.id}: {task.repo}#{task.number}"
    live = stream is not None and task.state in ACTIVE_STATES
    script = live_script(stream, nonce) if live and stream is not None else ""
    empty = "" if live else "(empty)"
    status = '<p>Log: <b id="live">connecting…</b></p>' if live else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{repo_anchor(task.repo, repo_link)}"
        f"<p>State: <b id='state'>{html.escape(task.state.value)}</b>. "
        f"Requested by @{html.escape(task.requester)}:</p>"
        f"<pre>{html.escape(task.request)}</pre>"
        f"<h2>Phases</h2><table id='phases'><tr><th>phase</th><th>status</th><th>time</th>"
        f"<th></th></tr>{phase_rows(phases)}</table>"
        f"<h2>Checks</h2><pre id='checks'>{html.escape(phase_lines(log)) or empty}</pre>"
        f"<h2>Log</h2>{status}<pre id='log'>{html.escape(log) or empty}</pre>"
        f"<h2>Diff</h2><pre>{html.escape(patch) or '(none)'}</pre>"
        f"{attempts_section(usage)}{usage_section(usage)}{script}</body></html>"
    )


def security_headers(nonce: str) -> dict[str, str]:
    """Only the page's own script runs, it reaches only this server, and the signed URL is
    never sent on as a referrer."""
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
