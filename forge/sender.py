"""Webhook deliveries built from GitHub's real example payloads, signed and POSTed."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

USER_AGENT = "GitHub-Hookshot/forge"
EXAMPLE_HTML = "https://github.com"
EXAMPLE_API = "https://api.github.com"

JSON = dict[str, Any]


def sign(secret: str | bytes, body: bytes) -> str:
    """`X-Hub-Signature-256` for `body`: `sha256=` + hex HMAC-SHA256 with the webhook secret."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@functools.cache
def load_examples(path: Path) -> tuple[Mapping[str, Any], ...]:
    """The `@octokit/webhooks-examples` list (`{name, actions, examples}`), once per process."""
    with path.open("rb") as handle:
        return tuple(json.load(handle))


def pick_example(
    examples: tuple[Mapping[str, Any], ...], event: str, action: str | None, *, index: int = 0
) -> JSON:
    """A deep copy of the `index`-th example of `event` with that `action`."""
    for group in examples:
        if group["name"] != event:
            continue
        matching = [e for e in group["examples"] if action is None or e.get("action") == action]
        if len(matching) > index:
            return copy.deepcopy(dict(matching[index]))
    raise LookupError(f"no webhook example for {event}.{action} (index {index})")


@dataclass(frozen=True)
class Rewrite:
    """Where a delivery should point: the stand-in's repo, installation, sender and text."""

    owner: str
    repo: str
    html_url: str
    api_url: str
    installation_id: int
    sender: str
    repo_id: int | None = None
    body: str | None = None
    number: int | None = None
    default_branch: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def rewrite(payload: JSON, spec: Rewrite) -> JSON:
    """Point an example payload at the stand-in: repo, URLs, installation, sender, text."""
    old = payload.get("repository", {}).get("full_name")
    if old:
        payload = _replace_strings(payload, _url_map(old, spec))
    if "repository" in payload:
        _rewrite_repo(payload["repository"], spec)
    # Installation events carry the whole installation (account and all); keep it.
    payload["installation"] = {
        **payload.get("installation", {}),
        "id": spec.installation_id,
        "node_id": f"MDIz{spec.installation_id}",
    }
    _set_login(payload.get("sender"), spec.sender)
    for key in ("comment", "review", "issue", "pull_request"):
        if key in payload and spec.body is not None and key == _text_holder(payload):
            payload[key]["body"] = spec.body
    for key in ("comment", "review"):
        if key in payload:
            _set_login(payload[key].get("user"), spec.sender)
    if spec.number is not None:
        _renumber(payload, spec)
    payload.update(copy.deepcopy(dict(spec.extra)))
    return payload


def _text_holder(payload: JSON) -> str:
    """Which object's `body` is the text that triggers work: the comment, else issue/PR."""
    for key in ("comment", "review"):
        if key in payload:
            return key
    return "issue" if "issue" in payload else "pull_request"


def _url_map(old_full_name: str, spec: Rewrite) -> list[tuple[str, str]]:
    new = f"{spec.owner}/{spec.repo}"
    old_owner = old_full_name.split("/")[0]
    return [
        (f"{EXAMPLE_API}/repos/{old_full_name}", f"{spec.api_url}/repos/{new}"),
        (f"{EXAMPLE_HTML}/{old_full_name}", f"{spec.html_url}/{new}"),
        (f"git://github.com/{old_full_name}", f"{spec.html_url}/{new}"),
        (f"git@github.com:{old_full_name}", f"{spec.html_url}/{new}"),
        (f"{EXAMPLE_API}/users/{old_owner}", f"{spec.api_url}/users/{spec.owner}"),
        (f"{EXAMPLE_API}/", f"{spec.api_url}/"),
        (f"{EXAMPLE_HTML}/", f"{spec.html_url}/"),
    ]


def _replace_strings(node: Any, pairs: list[tuple[str, str]]) -> Any:
    """Rewrite URL prefixes in every string of a JSON document (first matching pair wins)."""
    if isinstance(node, dict):
        return {k: _replace_strings(v, pairs) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, pairs) for v in node]
    if isinstance(node, str):
        for old, new in pairs:
            if node.startswith(old):
                return new + node[len(old) :]
    return node


def _rewrite_repo(repo: JSON, spec: Rewrite) -> None:
    repo["name"] = spec.repo
    repo["full_name"] = f"{spec.owner}/{spec.repo}"
    repo["html_url"] = f"{spec.html_url}/{spec.owner}/{spec.repo}"
    repo["url"] = f"{spec.api_url}/repos/{spec.owner}/{spec.repo}"
    repo["clone_url"] = f"{spec.html_url}/{spec.owner}/{spec.repo}.git"
    if spec.repo_id is not None:
        repo["id"] = spec.repo_id
    if spec.default_branch is not None:
        repo["default_branch"] = spec.default_branch
    _set_login(repo.get("owner"), spec.owner)


def _set_login(account: Any, login: str) -> None:
    if isinstance(account, dict):
        account["login"] = login


def _renumber(payload: JSON, spec: Rewrite) -> None:
    """Set the issue/PR number and the URLs that end with it."""
    base_api = f"{spec.api_url}/repos/{spec.owner}/{spec.repo}"
    base_html = f"{spec.html_url}/{spec.owner}/{spec.repo}"
    for key, kind in (("issue", "issues"), ("pull_request", "pulls")):
        item = payload.get(key)
        if not isinstance(item, dict):
            continue
        item["number"] = spec.number
        item["url"] = f"{base_api}/{kind}/{spec.number}"
        page = "issues" if key == "issue" and "pull_request" not in item else "pull"
        item["html_url"] = f"{base_html}/{page}/{spec.number}"
    comment = payload.get("comment")
    if isinstance(comment, dict) and "issue_url" in comment:
        comment["issue_url"] = f"{base_api}/issues/{spec.number}"


@dataclass(frozen=True)
class Delivery:
    """Headers and body of one webhook delivery."""

    event: str
    delivery_id: str
    headers: Mapping[str, str]
    body: bytes


def build_delivery(event: str, payload: Mapping[str, Any], secret: str | bytes) -> Delivery:
    """Serialize and sign a payload with the headers GitHub sends."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    delivery_id = str(uuid.uuid4())
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    return Delivery(event, delivery_id, headers, body)


async def post_delivery(url: str, delivery: Delivery) -> int:
    """POST a delivery; return the receiver's status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=delivery.body, headers=dict(delivery.headers)) as response,
    ):
        await response.read()
        return response.status
