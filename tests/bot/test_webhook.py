"""The webhook edge, through the real app with real example payloads from the stand-in."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from bot.webhook import MAX_BODY_BYTES, sign
from tests.bot.conftest import BOT, READER, SECRET, WRITER, Gantry

MENTION = "@gantry fix the flaky date test"


def test_signature_matches_githubs_documented_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    assert (
        sign("It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


async def test_a_writers_mention_on_an_issue_queues_one_task_and_reacts(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = gantry.forge.add_comment(
        "octo", "hello", gantry.issue_number, MENTION, WRITER
    )
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=gantry.issue_number)
    status, answer = await gantry.post(delivery)
    assert (status, answer) == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.repo, task.number, task.requester) == ("octo/hello", gantry.issue_number, WRITER)
    assert task.request == "fix the flaky date test"
    assert task.delivery_id == delivery.delivery_id
    assert task.clone_url.startswith(gantry.forge.base_url)
    await gantry.settle()
    assert ("eyes", "gantry[bot]") in gantry.forge.reactions(payload["comment"]["id"])


async def test_a_mention_on_a_pull_request_records_its_head(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    payload["issue"]["pull_request"] = {"url": "set by the rewrite"}
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=gantry.pull_number)
    status, _ = await gantry.post(delivery)
    assert status == 200
    [task] = await gantry.tasks()
    branches = await gantry.forge.branches("octo", "hello")
    assert task.is_pull_request
    assert (task.head_ref, task.head_sha) == ("feature", branches["feature"])


@pytest.mark.parametrize(
    ("event", "creating_action"),
    [
        ("issue_comment", "created"),
        ("pull_request_review_comment", "created"),
        ("pull_request_review", "submitted"),
        ("issues", None),
        ("installation", None),
        ("ping", None),
    ],
)
async def test_every_real_example_is_answered_without_a_5xx(
    gantry: Gantry, event: str, creating_action: str | None
) -> None:
    examples = gantry.examples(event)
    assert examples, f"no examples of {event}"
    expected_tasks = 0
    for payload in examples:
        is_pr = "pull_request" in payload or "pull_request" in payload.get("issue", {})
        number = gantry.pull_number if is_pr else gantry.issue_number
        delivery = gantry.delivery(event, payload, body=MENTION, number=number)
        status, answer = await gantry.post(delivery)
        assert status < 500, (event, payload.get("action"), answer)
        if creating_action is not None and payload.get("action") == creating_action:
            expected_tasks += 1
            assert answer == {"outcome": "queued"}, (event, payload.get("action"))
    assert len(await gantry.tasks()) == expected_tasks
    await gantry.settle()


async def test_the_same_delivery_twenty_times_at_once_makes_one_task(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=gantry.issue_number)
    results = await asyncio.gather(*(gantry.post(delivery) for _ in range(20)))
    outcomes = sorted(answer["outcome"] for _, answer in results)
    assert outcomes == ["duplicate"] * 19 + ["queued"]
    assert len(await gantry.tasks()) == 1


@pytest.mark.parametrize(
    ("sender", "login_type"), [(READER, "User"), (BOT, "Bot"), ("gantry[bot]", "Bot")]
)
async def test_readers_bots_and_gantry_itself_create_nothing(
    gantry: Gantry, sender: str, login_type: str
) -> None:
    payload = gantry.examples("issue_comment")[0]
    payload["comment"]["user"]["type"] = login_type
    delivery = gantry.delivery(
        "issue_comment", payload, sender=sender, body=MENTION, number=gantry.issue_number
    )
    status, answer = await gantry.post(delivery)
    assert status < 300
    assert answer["outcome"] in {"refused", "ignored"}
    assert await gantry.tasks() == []


async def test_a_refused_thread_gets_one_polite_reply(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    for _ in range(3):
        delivery = gantry.delivery(
            "issue_comment", payload, sender=READER, body=MENTION, number=gantry.issue_number
        )
        assert (await gantry.post(delivery))[1] == {"outcome": "refused"}
    await gantry.settle()
    replies = gantry.forge.comments("octo", "hello", gantry.issue_number)
    assert [c["user"] for c in replies] == ["gantry[bot]"]
    assert "only people with write access" in replies[0]["body"]


async def test_edited_comments_do_not_trigger(gantry: Gantry) -> None:
    payload = next(p for p in gantry.examples("issue_comment") if p["action"] == "edited")
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=gantry.issue_number)
    status, answer = await gantry.post(delivery)
    assert (status, answer) == (202, {"outcome": "ignored"})


def signed(body: bytes, delivery_id: str) -> dict[str, str]:
    """Headers of a genuine issue_comment delivery of any body."""
    return {
        "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
        ({"X-Hub-Signature-256": ""}, 401),
        ({"X-GitHub-Event": ""}, 400),
        ({"X-GitHub-Delivery": ""}, 400),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ],
)
async def test_bad_headers_get_their_4xx_and_create_nothing(
    gantry: Gantry, change: dict[str, str], status: int
) -> None:
    payload = gantry.examples("issue_comment")[0]
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=1)
    headers = {**delivery.headers, **change}
    for name, value in change.items():
        if not value:
            del headers[name]
    answered, _ = await gantry.post_raw(delivery.body, headers)
    assert answered == status
    assert await gantry.tasks() == []


async def test_a_sha1_only_signature_is_refused(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    delivery = gantry.delivery("issue_comment", payload, body=MENTION, number=1)
    headers = dict(delivery.headers)
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + "a" * 40
    assert (await gantry.post_raw(delivery.body, headers))[0] == 401
    assert await gantry.tasks() == []


async def test_malformed_json_is_400_even_when_signed(gantry: Gantry) -> None:
    for body in (b"{not json", b"[1, 2, 3]", "\u00e9".encode("latin-1")):
        assert (await gantry.post_raw(body, signed(body, "malformed")))[0] == 400, body
    assert await gantry.tasks() == []


async def test_a_signed_payload_missing_fields_is_kept_as_failed_with_its_reason(
    gantry: Gantry,
) -> None:
    body = json.dumps({"action": "created", "comment": {"body": MENTION}}).encode()
    assert (await gantry.post_raw(body, signed(body, "thin")))[0] == 200
    assert await gantry.outcome("thin") == "failed"
    entry = await gantry.services.store.inbox_entry("thin")
    assert entry is not None
    assert (entry.attempts, entry.reason) == (
        1,
        "payload lacks what its event needs: KeyError('issue')",
    )


async def test_an_oversize_body_is_413(gantry: Gantry) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    assert (await gantry.post_raw(body, signed(body, "big")))[0] == 413


async def test_an_unhandled_event_is_202(gantry: Gantry) -> None:
    payload = gantry.examples("star")[0]
    status, answer = await gantry.post(gantry.delivery("star", payload))
    assert (status, answer) == (202, {"outcome": "ignored"})


async def test_ping_is_200(gantry: Gantry) -> None:
    status, answer = await gantry.post(gantry.delivery("ping", gantry.examples("ping")[0]))
    assert (status, answer) == (200, {"outcome": "pong"})


def mutate(node: Any, rng: random.Random) -> Any:
    """Replace one value somewhere in a payload with a value of a surprising type."""
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if rng.random() < 0.3:
            return {k: v for k, v in node.items() if k != key}
        return {**node, key: mutate(node[key], rng)}
    if isinstance(node, list) and node:
        index = rng.randrange(len(node))
        return [*node[:index], mutate(node[index], rng), *node[index + 1 :]]
    return rng.choice([None, "", "x" * 300, -1, 2**70, 1.5, [], {}, [None], {"a": 1}, True])


async def test_mangled_but_signed_payloads_never_get_a_5xx(gantry: Gantry) -> None:
    rng = random.Random(20261124)
    events = ("issue_comment", "pull_request_review_comment", "pull_request_review", "issues")
    answered: set[int] = set()
    for n in range(300):
        event = rng.choice(events)
        payload = gantry.examples(event)[0]
        holder = next(k for k in ("comment", "review", "issue") if k in payload)
        payload[holder]["body"] = MENTION
        for _ in range(rng.randint(1, 3)):
            payload = mutate(payload, rng)
        body = json.dumps(payload).encode()
        headers = {**signed(body, f"fuzz-{n}"), "X-GitHub-Event": event}
        status, text = await gantry.post_raw(body, headers)
        assert status < 500, (event, text, payload)
        answered.add(status)
    await gantry.settle()
    assert 400 in answered
