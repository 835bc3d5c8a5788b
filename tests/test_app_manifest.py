"""app.yml, the App manifest: valid, least privilege, subscribed to what Gantry handles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "gantry" / "app.yml"
# What the intake routes, per DESIGN.md; installation events need no subscription.
HANDLED_EVENTS = {
    "issue_comment",
    "issues",
    "pull_request_review_comment",
    "pull_request_review",
    "pull_request",
}
ENTRY = re.compile(r"^  (- [a-z_]+|[a-z_]+: (read|write))$")
NEEDED_PERMISSIONS = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "metadata": "read",
}


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def test_manifest_has_the_keys_github_requires() -> None:
    data = manifest()
    assert data["name"]
    assert data["url"].startswith("https://")
    assert data["hook_attributes"]["url"].endswith("/webhook")
    assert data["public"] is False


def test_permissions_are_exactly_the_needed_ones() -> None:
    assert manifest()["default_permissions"] == NEEDED_PERMISSIONS


def test_subscribes_to_every_handled_event_and_nothing_else() -> None:
    assert set(manifest()["default_events"]) == HANDLED_EVENTS


def test_every_permission_and_event_says_why() -> None:
    lines = MANIFEST.read_text().splitlines()
    entries = [n for n, line in enumerate(lines) if ENTRY.match(line)]
    assert len(entries) == len(HANDLED_EVENTS) + len(NEEDED_PERMISSIONS)
    for number in entries:
        assert lines[number - 1].strip().startswith("#"), f"app.yml:{number + 1} says not why"
