"""`--attempts N` before a request: parsed, stored with the task, kept by retry and by `go`;
anything but a positive whole number, or more than one for review, ask or plan (no code to
pick from), gets a reply and no task."""

from __future__ import annotations

import pytest

from bot.answers import GitHubAnswers
from bot.commands import MAX_ASKED_ATTEMPTS, Command, Kind, help_text, parse_command
from bot.intake import new_task
from bot.triggers import Trigger
from config.repo_config import RepoConfig
from runner.modes import Answer, Mode
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry
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


@pytest.mark.parametrize(
    ("body", "kind"), [("ask why so slow", "ask"), ("plan add a flag", "plan")]
)
async def test_attempts_on_a_mode_that_changes_no_code_get_a_reply_and_no_task(
    gantry: Gantry, body: str, kind: str
) -> None:
    answer = await comment(gantry, f"@gantry --attempts 3 {body}")
    assert answer == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = bot_replies(gantry)
    assert f"`--attempts` is for code changes: `{kind}` runs once" in reply
    assert "No task was started." in reply


async def test_attempts_on_a_review_of_a_pull_request_get_a_reply_and_no_task(
    gantry: Gantry,
) -> None:
    payload = gantry.examples("issue_comment")[0]
    payload["issue"]["pull_request"] = {"url": "set by the rewrite"}
    body = "@gantry --attempts 2 review"
    delivery = gantry.delivery("issue_comment", payload, body=body, number=gantry.pull_number)
    assert await gantry.post(delivery) == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = [
        c["body"]
        for c in gantry.forge.comments(OWNER, REPO, gantry.pull_number)
        if c["user"] == "gantry[bot]"
    ]
    assert "`--attempts` is for code changes: `review` runs once" in reply


async def test_one_attempt_on_a_mode_is_what_runs_anyway(gantry: Gantry) -> None:
    assert await comment(gantry, "@gantry --attempts 1 ask why") == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.kind, task.best_of) == ("ask", 1)


async def test_review_with_text_on_an_issue_is_a_code_request_and_keeps_its_attempts(
    gantry: Gantry,
) -> None:
    body = "@gantry --attempts 3 review the docs and fix the typos"
    assert await comment(gantry, body) == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.kind, task.request, task.best_of) == (
        "request",
        "review the docs and fix the typos",
        3,
    )


async def test_go_carries_a_plan_out_with_the_attempts_it_was_given(gantry: Gantry) -> None:
    trigger = Trigger(
        "issue_comment", f"{OWNER}/{REPO}", gantry.installation_id, "", "main",
        gantry.issue_number, False, "t", 1, "issue_comment", WRITER, "User", "@gantry plan x",
    )  # fmt: skip
    store = gantry.services.store
    planned = await store.add_task(new_task(trigger, Command(Kind.PLAN, "refactor x"), None), "p1")
    gh = gantry.services.tokens.client(gantry.installation_id)
    await GitHubAnswers(gh, planned, "gantry").post(Answer(Mode.PLAN, text="- step"), RepoConfig())
    await store.set_state(planned.id, TaskState.SUCCEEDED)
    assert await comment(gantry, "@gantry --attempts 3 go") == (200, {"outcome": "queued"})
    [go] = await gantry.tasks()
    assert (go.kind, go.best_of) == ("request", 3)
