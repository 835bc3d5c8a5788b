"""Hostile deliveries at intake: hidden text on every path, fork PRs, absurd signed payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.pull_requests import head_of
from bot.webhook import WebhookRejectedError, parse_payload, sign
from tests.bot.conftest import OWNER, REPO, SECRET, WRITER, Gantry
from tests.bot.test_hidden_text import HIDDEN, SHOWN_CODE, UNRENDERED

PATHS = ("mention", "review comment", "review", "label", "assignment")
FORK = "mallory/hello"


def payload_for(gantry: Gantry, path: str) -> tuple[str, dict[str, Any], int]:
    """A real example payload of the path's event, and the thread it points at."""
    if path == "mention":
        payload = gantry.examples("issue_comment")[0]
        payload["issue"].pop("pull_request", None)
        return "issue_comment", payload, gantry.issue_number
    if path in ("review comment", "review"):
        event = "pull_request_review_comment" if path == "review comment" else "pull_request_review"
        action = "created" if path == "review comment" else "submitted"
        payload = next(p for p in gantry.examples(event) if p["action"] == action)
        return event, payload, gantry.pull_number
    action = "labeled" if path == "label" else "assigned"
    payload = next(p for p in gantry.examples("issues") if p["action"] == action)
    payload["label"] = {"name": "gantry"}
    payload["assignee"] = {"login": "gantry[bot]"}
    return "issues", payload, gantry.issue_number


def with_text(payload: dict[str, Any], event: str, title: str, body: str, ask: str) -> None:
    """Put the thread's title and body, and the request (a comment or the issue), in place."""
    thread = payload["issue"] if "issue" in payload else payload["pull_request"]
    thread["title"], thread["body"] = title, body
    holder = {"pull_request_review_comment": "comment", "pull_request_review": "review"}
    key = holder.get(event) or ("comment" if event == "issue_comment" else None)
    if key is not None:
        payload[key]["body"] = ask
    else:  # labels and assignments: the issue is the request
        thread["body"] = f"{body}\n\n{ask}"


async def deliver(gantry: Gantry, path: str, hidden: str) -> tuple[int, Any]:
    event, payload, number = payload_for(gantry, path)
    ask = "@gantry please " + hidden
    with_text(payload, event, "Title " + hidden, "Body " + hidden, ask)
    if event == "issues":
        thread = payload["issue"]
        delivery = gantry.delivery(event, payload, number=number, body=thread["body"])
    else:
        delivery = gantry.delivery(event, payload, number=number, body=ask)
    return await gantry.post(delivery)


@pytest.mark.parametrize("kind", HIDDEN)
@pytest.mark.parametrize("path", PATHS)
async def test_no_hidden_text_reaches_the_stored_task(gantry: Gantry, path: str, kind: str) -> None:
    status, answer = await deliver(gantry, path, HIDDEN[kind])
    assert (status, answer) == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    # What the agent gets (GANTRY_PROMPT, the task file) is made from these fields only.
    for value in (task.request, task.title, task.thread_body):
        assert "rm -rf" not in value, (path, kind, value)
        assert "fix it" in value
    await gantry.settle()


@pytest.mark.parametrize("kind", UNRENDERED)
@pytest.mark.parametrize("path", PATHS)
async def test_markup_github_never_shows_stays_out_and_code_stays_as_written(
    gantry: Gantry, path: str, kind: str
) -> None:
    # An issue's author without write access hides an instruction that a writer, labelling
    # or mentioning, never sees; the code block showing the same markup is seen, and kept.
    status, answer = await deliver(gantry, path, f"fix it\n\n{SHOWN_CODE}\n\n{UNRENDERED[kind]}")
    assert (status, answer) == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    for value in (task.request, task.title, task.thread_body):
        assert "rm -rf" not in value, (path, kind, value)
    for value in (task.request, task.thread_body):
        assert "fix it" in value
        assert SHOWN_CODE in value, (path, kind, value)
    await gantry.settle()


def fork_review(gantry: Gantry, head_repo: Any) -> dict[str, Any]:
    _, payload, _ = payload_for(gantry, "review comment")
    payload["pull_request"]["head"]["repo"] = head_repo
    return payload


@pytest.mark.parametrize("head_repo", [{"full_name": FORK}, None])
async def test_a_fork_pull_request_is_refused_with_a_reply(gantry: Gantry, head_repo: Any) -> None:
    payload = fork_review(gantry, head_repo)
    delivery = gantry.delivery(
        "pull_request_review_comment",
        payload,
        body="@gantry run the tests",
        number=gantry.pull_number,
        installation_id=gantry.installation_id,
    )
    # rewrite() points every repository at the stand-in's; the fork is set after it.
    data = json.loads(delivery.body)
    data["pull_request"]["head"]["repo"] = head_repo
    body = json.dumps(data).encode()
    headers = {**delivery.headers, "X-Hub-Signature-256": sign(SECRET, body)}
    status, text = await gantry.post_raw(body, headers)
    assert (status, json.loads(text)) == (200, {"outcome": "accepted"})
    assert await gantry.outcome(delivery.headers["X-GitHub-Delivery"]) == "refused"
    assert await gantry.tasks() == []
    await gantry.settle()
    replies = [
        c["body"]
        for c in gantry.forge.comments(OWNER, REPO, gantry.pull_number)
        if c["user"] == "gantry[bot]"
    ]
    assert len(replies) == 1
    assert "forks" in replies[0]
    assert f"Push the branch to {OWNER}/{REPO} itself" in replies[0]


async def test_a_same_repository_pull_request_is_queued_at_its_head(gantry: Gantry) -> None:
    status, answer = await deliver(gantry, "review comment", "")
    assert (status, answer) == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    _, payload, _ = payload_for(gantry, "review comment")
    head = payload["pull_request"]["head"]
    assert (task.head_ref, task.head_sha) == (head["ref"], head["sha"])


def test_the_head_of_a_real_payload_says_whose_it_is(gantry: Gantry) -> None:
    _, payload, _ = payload_for(gantry, "review")
    assert not head_of(payload["pull_request"]).fork
    assert head_of(fork_review(gantry, {"full_name": FORK})["pull_request"]).fork
    assert head_of(fork_review(gantry, None)["pull_request"]).fork


def signed_body(body: bytes, delivery_id: str) -> dict[str, str]:
    """Headers of a genuine issue_comment delivery of any body."""
    return {
        "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }


def signed_comment(payload: dict[str, Any], delivery_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, signed_body(body, delivery_id)


def valid_comment(gantry: Gantry) -> dict[str, Any]:
    payload = gantry.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = gantry.forge.add_comment(
        OWNER, REPO, gantry.issue_number, "@gantry fix it", WRITER
    )
    delivery = gantry.delivery(
        "issue_comment", payload, body="@gantry fix it", number=gantry.issue_number
    )
    data: dict[str, Any] = json.loads(delivery.body)
    return data


@pytest.mark.parametrize("field", ["issue.number", "installation.id", "comment.id"])
async def test_a_number_of_2_to_the_70_is_400_and_the_redelivery_is_handled(
    gantry: Gantry, field: str
) -> None:
    good = valid_comment(gantry)
    absurd = json.loads(json.dumps(good))
    holder, key = field.split(".")
    absurd[holder][key] = 2**70
    status, _ = await gantry.post_raw(*signed_comment(absurd, "absurd-1"))
    assert status == 400
    assert await gantry.tasks() == []
    status, text = await gantry.post_raw(*signed_comment(good, "absurd-1"))
    assert (status, json.loads(text)) == (200, {"outcome": "accepted"})
    assert await gantry.outcome("absurd-1") == "queued"
    assert len(await gantry.tasks()) == 1
    await gantry.settle()


def nested(depth: int) -> bytes:
    return b'{"action": "created", "x": ' + b"[" * depth + b"]" * depth + b"}"


def test_json_nested_100000_deep_is_a_400_rejection() -> None:
    with pytest.raises(WebhookRejectedError) as caught:
        parse_payload(nested(100_000))
    assert caught.value.status == 400
    assert parse_payload(nested(10))["action"] == "created"


async def test_json_nested_100000_deep_is_400_and_the_redelivery_is_handled(
    gantry: Gantry,
) -> None:
    body = nested(100_000)
    status, _ = await gantry.post_raw(body, signed_body(body, "deep-1"))
    assert status == 400
    status, text = await gantry.post_raw(*signed_comment(valid_comment(gantry), "deep-1"))
    assert (status, json.loads(text)) == (200, {"outcome": "accepted"})
    assert await gantry.outcome("deep-1") == "queued"
