"""`review.auto`: who and what a pull_request delivery may start a review for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bot.conftest import BOT, OWNER, READER, REPO, WRITER, Gantry


async def opened(
    gantry: Gantry, *, sender: str = WRITER, draft: bool = False, fork: bool = False
) -> str:
    """A signed `pull_request.opened` for the fixture's PR; the outcome the inbox recorded."""
    heads = await gantry.forge.branches(OWNER, REPO)
    payload: dict[str, Any] = next(
        p for p in gantry.examples("pull_request") if p["action"] == "opened"
    )
    pull = payload["pull_request"]
    pull.update(number=gantry.pull_number, draft=draft, state="open")
    pull["head"].update(ref="feature", sha=heads["feature"])
    pull["head"]["repo"]["full_name"] = "someone/fork" if fork else f"{OWNER}/{REPO}"
    pull["base"]["repo"]["full_name"] = f"{OWNER}/{REPO}"
    delivery = gantry.delivery("pull_request", payload, number=gantry.pull_number, sender=sender)
    status, answer = await gantry.post(delivery)
    assert status == 200
    await gantry.settle()
    return str(answer["outcome"])


async def auto_on(gantry: Gantry) -> None:
    config = "review: {auto: true}\n"
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": config})


async def test_a_writers_ready_pull_request_is_queued_for_review(gantry: Gantry) -> None:
    await auto_on(gantry)
    assert "queued" in await opened(gantry)
    [task] = await gantry.tasks()
    assert (task.kind, task.requester, task.number) == ("review", WRITER, gantry.pull_number)


@pytest.mark.parametrize(
    ("kwargs", "outcome"),
    [
        ({"sender": READER}, "refused"),
        ({"sender": BOT}, "ignored"),
        ({"draft": True}, "ignored"),
        ({"fork": True}, "ignored"),
    ],
)
async def test_untrusted_senders_drafts_and_forks_start_nothing(
    gantry: Gantry, kwargs: dict[str, Any], outcome: str
) -> None:
    await auto_on(gantry)
    got = await opened(gantry, **kwargs)
    assert outcome in got
    assert "queued" not in got
    assert await gantry.tasks() == []
    bot_comments = [
        c for c in gantry.forge.comments(OWNER, REPO, gantry.pull_number) if "[bot]" in c["user"]
    ]
    assert bot_comments == []  # skipped silently: no refusal on every pull request


async def test_without_review_auto_nothing_is_queued(gantry: Gantry) -> None:
    assert "queued" not in await opened(gantry)
    assert await gantry.tasks() == []
