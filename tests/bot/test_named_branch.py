"""`@gantry on <branch>: <request>`: the grammar, and the intake's check that the branch exists."""

from __future__ import annotations

import pytest

from bot.commands import Command, Kind, help_text, interpret
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.bot.test_intake import bot_replies, comment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "on release-2.1: fix the date test",
            Command(Kind.REQUEST, "fix the date test", branch="release-2.1"),
        ),
        ("On release/2.1:\nfix it", Command(Kind.REQUEST, "fix it", branch="release/2.1")),
        ("--agent claude on v2: fix it", Command(Kind.REQUEST, "fix it", "claude", branch="v2")),
        ("on v2: --model m fix it", Command(Kind.REQUEST, "fix it", model="m", branch="v2")),
        ("on v2: exec make test", Command(Kind.EXEC, "make test", branch="v2")),
        ("on Windows the path test fails", Command(Kind.REQUEST, "on Windows the path test fails")),
        ("on second thought: fix it", Command(Kind.REQUEST, "on second thought: fix it")),
        ("on v2:fix it", Command(Kind.REQUEST, "on v2:fix it")),
        ("on v2: status", Command(Kind.STATUS)),
    ],
)
def test_the_grammar(text: str, expected: Command) -> None:
    assert interpret(text) == expected


def test_help_shows_the_grammar() -> None:
    assert "`@gantry on <branch>: <request>`" in help_text("gantry")


async def test_an_existing_branch_is_stored_and_kept_by_retry(gantry: Gantry) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "release/2.1", {"VERSION": "2.1\n"})
    answer = await comment(gantry, "@gantry on release/2.1: fix the date test")
    assert answer == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.request, task.head_ref, task.head_sha) == (
        "fix the date test",
        "release/2.1",
        None,
    )
    await comment(gantry, "@gantry cancel")
    await comment(gantry, "@gantry retry")
    retried = [t for t in await gantry.tasks() if t.id != task.id]
    assert [t.head_ref for t in retried] == ["release/2.1"]
    assert gantry.forge.take_violations() == []


async def test_without_a_branch_the_task_starts_from_the_default_branch(gantry: Gantry) -> None:
    assert await comment(gantry, "@gantry fix it") == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert task.head_ref is None


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("@gantry on release-9: fix it", "octo/hello has no branch `release-9`. No task"),
        ("@gantry on a..b: fix it", "`a..b` is not a valid branch name. No task"),
        ("@gantry on x.lock: fix it", "`x.lock` is not a valid branch name. No task"),
    ],
)
async def test_a_missing_or_invalid_branch_gets_a_reply_and_no_task(
    gantry: Gantry, body: str, reply: str
) -> None:
    assert await comment(gantry, body) == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [text] = bot_replies(gantry)
    assert reply in text
    assert gantry.forge.take_violations() == []


async def test_on_a_pull_request_a_named_branch_is_refused(gantry: Gantry) -> None:
    payload = gantry.examples("issue_comment")[0]
    payload["issue"]["pull_request"] = {"url": "set by the rewrite"}
    body = "@gantry on main: fix it"
    delivery = gantry.delivery("issue_comment", payload, body=body, number=gantry.pull_number)
    assert await gantry.post(delivery) == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    replies = [
        c["body"]
        for c in gantry.forge.comments(OWNER, REPO, gantry.pull_number)
        if c["user"] == "gantry[bot]"
    ]
    [reply] = replies
    assert "`on <branch>:` is for issues" in reply
