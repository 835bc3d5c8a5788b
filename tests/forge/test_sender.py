"""Signed webhook deliveries from real example payloads, rewritten to point at the stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from forge.data import ensure_github_data
from forge.sender import Rewrite, build_delivery, load_examples, pick_example, rewrite, sign
from tests.forge.conftest import OWNER, REPO, Seeded, run_git

SECRET = "webhook-secret"


def test_signature_matches_githubs_test_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_rewrite_points_an_example_at_the_stand_in() -> None:
    examples = load_examples(ensure_github_data().webhooks)
    payload = pick_example(examples, "issue_comment", "created")
    spec = Rewrite(
        owner="acme",
        repo="rocket",
        html_url="http://127.0.0.1:9",
        api_url="http://127.0.0.1:9/api/v3",
        installation_id=42,
        sender="alice",
        body="@gantry fix the flaky date test",
        number=7,
    )
    out = rewrite(payload, spec)
    repo = out["repository"]
    assert (repo["name"], repo["full_name"], repo["owner"]["login"]) == (
        "rocket",
        "acme/rocket",
        "acme",
    )
    assert repo["clone_url"] == "http://127.0.0.1:9/acme/rocket.git"
    assert repo["pulls_url"].startswith("http://127.0.0.1:9/api/v3/repos/acme/rocket/pulls")
    assert out["installation"]["id"] == 42
    assert out["sender"]["login"] == out["comment"]["user"]["login"] == "alice"
    assert out["comment"]["body"] == "@gantry fix the flaky date test"
    assert out["issue"]["number"] == 7
    assert out["issue"]["url"] == "http://127.0.0.1:9/api/v3/repos/acme/rocket/issues/7"
    assert "github.com/Codertocat" not in json.dumps(out)


def test_pick_example_refuses_unknown_action() -> None:
    examples = load_examples(ensure_github_data().webhooks)
    with pytest.raises(LookupError):
        pick_example(examples, "issue_comment", "teleported")


def test_delivery_headers() -> None:
    delivery = build_delivery("ping", {"zen": "Keep it logically awesome."}, SECRET)
    assert delivery.headers["X-GitHub-Event"] == "ping"
    assert uuid.UUID(delivery.headers["X-GitHub-Delivery"]).version == 4
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert delivery.headers["X-Hub-Signature-256"] == sign(SECRET, delivery.body)


@dataclass
class Receiver:
    """A tiny webhook receiver that verifies signatures like a real App would."""

    url: str = ""
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return web.Response(status=401)
        self.received.append((dict(request.headers), json.loads(body)))
        return web.Response(status=202)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/webhook", target.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    target.url = str(server.make_url("/webhook"))
    try:
        yield target
    finally:
        await server.close()


async def test_delivery_verifies_and_carries_rewritten_fields(
    seeded: Seeded, receiver: Receiver
) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Flaky")
    status = await seeded.forge.send_webhook(
        receiver.url,
        SECRET,
        "issue_comment",
        "created",
        owner=OWNER,
        repo=REPO,
        installation_id=seeded.installation_id,
        sender="alice",
        body="@gantry fix the flaky date test",
        number=issue.number,
    )
    assert status == 202
    [(headers, payload)] = receiver.received
    assert headers["X-GitHub-Event"] == "issue_comment"
    assert payload["action"] == "created"
    assert payload["repository"]["clone_url"] == seeded.forge.git_url(OWNER, REPO)
    assert payload["repository"]["id"] == seeded.forge.repo(OWNER, REPO).id
    assert payload["installation"]["id"] == seeded.installation_id
    assert payload["comment"]["body"] == "@gantry fix the flaky date test"
    assert payload["issue"]["number"] == issue.number


async def test_wrong_secret_is_rejected_by_the_receiver(seeded: Seeded, receiver: Receiver) -> None:
    status = await seeded.forge.send_webhook(
        receiver.url,
        "not-the-secret",
        "pull_request",
        "opened",
        owner=OWNER,
        repo=REPO,
        installation_id=seeded.installation_id,
        sender="alice",
    )
    assert status == 401
    assert receiver.received == []


async def test_pull_request_delivery_carries_the_stand_ins_pull(
    seeded: Seeded, receiver: Receiver, tmp_path: Path
) -> None:
    checkout = tmp_path / "clone"
    url = seeded.forge.git_url(OWNER, REPO, seeded.token)
    assert (await run_git("clone", "--quiet", url, str(checkout))).returncode == 0
    await run_git("checkout", "--quiet", "-b", "topic", cwd=checkout)
    await run_git("commit", "--quiet", "--allow-empty", "-m", "Topic", cwd=checkout)
    assert (await run_git("push", "--quiet", "origin", "topic", cwd=checkout)).returncode == 0
    pull = await seeded.gh.post(
        f"/repos/{OWNER}/{REPO}/pulls", data={"title": "Topic", "head": "topic", "base": "main"}
    )
    common = {
        "owner": OWNER,
        "repo": REPO,
        "installation_id": seeded.installation_id,
        "sender": "alice",
        "number": pull["number"],
    }
    await seeded.forge.send_webhook(receiver.url, SECRET, "pull_request", "opened", **common)
    await seeded.forge.send_webhook(
        receiver.url, SECRET, "issue_comment", "created", body="@gantry again", **common
    )
    [(_, opened), (_, commented)] = receiver.received
    assert opened["pull_request"]["head"]["sha"] == pull["head"]["sha"]
    assert opened["pull_request"]["head"]["ref"] == "topic"
    assert opened["pull_request"]["number"] == pull["number"]
    assert commented["issue"]["pull_request"]["url"] == pull["url"]
    assert commented["comment"]["body"] == "@gantry again"
