"""`--attempts N` before a request: parsed, stored with the task, kept by retry; anything
but a positive whole number gets a reply and no task."""

from __future__ import annotations

import pytest

from bot.commands import MAX_ASKED_ATTEMPTS, Kind, help_text, parse_command
from tests.bot.conftest import Gantry
from tests.bot.test_intake import bot_replies, comment


@pytest.mark.parametrize(
    ("body", "attempts", "text"),
    [
        ("@gantry --attempts 3 fix it", 3, "fix it"),
        ("@gantry --attempts=2 --agent claude fix it", 2, "fix it"),
        ("@gantry --agent claude --attempts 4 on dev: fix it", 4, "fix it"),
        ("@gantry fix it", None, "fix it"),
        ("@gantry --attempts 0 fix it", 0, "fix it"),
        ("@gantry --attempts three fix it", 0, "fix it"),
        ("@gantry --attempts 99999999999999999999 fix it", MAX_ASKED_ATTEMPTS, "fix it"),
        ("@gantry try --attempts 3 in the CLI", None, "try --attempts 3 in the CLI"),
    ],
)
def test_attempts_before_the_request_are_taken(body: str, attempts: int | None, text: str) -> None:
    command = parse_command(body, "gantry")
    assert command is not None
    assert (command.kind, command.text, command.attempts) == (Kind.REQUEST, text, attempts)


def test_help_shows_attempts() -> None:
    assert "--attempts 3 <request>" in help_text("gantry")


async def test_attempts_are_stored_with_the_task_and_kept_by_retry(gantry: Gantry) -> None:
    assert await comment(gantry, "@gantry --attempts 3 fix it") == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.request, task.best_of) == ("fix it", 3)
    await comment(gantry, "@gantry cancel")
    await comment(gantry, "@gantry retry")
    retried = [t for t in await gantry.tasks() if t.id != task.id]
    assert [t.best_of for t in retried] == [3]


async def test_a_task_without_attempts_has_one(gantry: Gantry) -> None:
    await comment(gantry, "@gantry fix it")
    [task] = await gantry.tasks()
    assert task.best_of == 1


@pytest.mark.parametrize("value", ["0", "many"])
async def test_attempts_that_are_no_number_get_a_reply_and_no_task(
    gantry: Gantry, value: str
) -> None:
    answer = await comment(gantry, f"@gantry --attempts {value} fix it")
    assert answer == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = bot_replies(gantry)
    assert "`--attempts` takes a whole number from 1 up (`--attempts 3`)" in reply
    assert "No task was started." in reply
