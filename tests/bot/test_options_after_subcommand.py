"""`--agent`, `--model` and `--attempts` right after a subcommand count as they do before it:
`@gantry review --attempts 3` gets the same reply as `@gantry --attempts 3 review`, instead of
handing `--attempts 3` to the agent as what to look at. Later in the text they stay text."""

from __future__ import annotations

from typing import Any

import pytest

from bot.answers import GitHubAnswers
from bot.commands import Command, Kind
from bot.intake import new_task
from bot.triggers import Trigger
from config.repo_config import RepoConfig
from runner.modes import Answer, Mode
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry
from tests.bot.test_intake import bot_replies, comment

CONFIG = """\
agent:
  preset: codex
  model: gpt-5-codex
  allow: [claude, "codex:gpt-5-mini"]
"""


async def on_pull(gantry: Gantry, body: str) -> tuple[int, Any]:
    """A real issue_comment delivery on the test pull request."""
    payload = gantry.examples("issue_comment")[0]
    payload["issue"]["pull_request"] = {"url": "set by the rewrite"}
    delivery = gantry.delivery("issue_comment", payload, body=body, number=gantry.pull_number)
    return await gantry.post(delivery)


def pull_replies(gantry: Gantry) -> list[str]:
    found = gantry.forge.comments(OWNER, REPO, gantry.pull_number)
    return [c["body"] for c in found if c["user"] == "gantry[bot]"]


async def tasks_of(gantry: Gantry) -> list[tuple[str, str, str | None, str | None, int]]:
    return [(t.kind, t.request, t.agent, t.model, t.best_of) for t in await gantry.tasks()]


@pytest.mark.parametrize("body", ["@gantry --attempts 3 review", "@gantry review --attempts 3"])
async def test_attempts_after_review_get_the_same_reply_as_before_it(
    gantry: Gantry, body: str
) -> None:
    assert await on_pull(gantry, body) == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = pull_replies(gantry)
    assert "`--attempts` is for code changes: `review` runs once" in reply


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("@gantry ask --attempts 3 why so slow", "ask"),
        ("@gantry plan --attempts=2 add a flag", "plan"),
        ("@gantry ask --model gpt-5-mini --attempts 3 why so slow", "ask"),
    ],
)
async def test_attempts_after_ask_or_plan_get_a_reply_and_no_task(
    gantry: Gantry, body: str, kind: str
) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    assert await comment(gantry, body) == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = bot_replies(gantry)
    assert f"`--attempts` is for code changes: `{kind}` runs once" in reply


async def test_an_agent_after_plan_runs_the_plan_with_that_agent(gantry: Gantry) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    assert await comment(gantry, "@gantry plan --agent claude add x") == (
        200,
        {"outcome": "queued"},
    )
    assert await tasks_of(gantry) == [("plan", "add x", "claude", None, 1)]


async def test_a_model_after_ask_is_picked_and_the_question_is_what_follows(
    gantry: Gantry,
) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    answer = await comment(gantry, "@gantry ask --model gpt-5-mini what is this")
    assert answer == (200, {"outcome": "queued"})
    assert await tasks_of(gantry) == [("ask", "what is this", None, "gpt-5-mini", 1)]


async def test_a_pick_after_a_subcommand_that_is_not_allowed_gets_a_reply(
    gantry: Gantry,
) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    answer = await comment(gantry, "@gantry ask --model gpt-4o what is this")
    assert answer == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = bot_replies(gantry)
    assert "codex with model gpt-4o is not allowed here" in reply


async def test_review_with_an_agent_after_it_reviews_the_pull_request_with_that_agent(
    gantry: Gantry,
) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    assert await on_pull(gantry, "@gantry review --agent claude mind the SQL") == (
        200,
        {"outcome": "queued"},
    )
    assert await tasks_of(gantry) == [("review", "mind the SQL", "claude", None, 1)]


async def test_exec_with_options_after_it_runs_only_the_command(gantry: Gantry) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    assert await comment(gantry, "@gantry exec --model gpt-5-mini make fmt") == (
        200,
        {"outcome": "queued"},
    )
    assert await tasks_of(gantry) == [("exec", "make fmt", None, "gpt-5-mini", 1)]


async def test_go_with_attempts_after_it_carries_the_plan_out_with_them(gantry: Gantry) -> None:
    trigger = Trigger(
        "issue_comment", f"{OWNER}/{REPO}", gantry.installation_id, "", "main",
        gantry.issue_number, False, "t", 1, "issue_comment", WRITER, "User", "@gantry plan x",
    )  # fmt: skip
    store = gantry.services.store
    planned = await store.add_task(new_task(trigger, Command(Kind.PLAN, "refactor x"), None), "p1")
    gh = gantry.services.tokens.client(gantry.installation_id)
    await GitHubAnswers(gh, planned, "gantry").post(Answer(Mode.PLAN, text="- step"), RepoConfig())
    await store.set_state(planned.id, TaskState.SUCCEEDED)
    assert await comment(gantry, "@gantry go --attempts 3") == (200, {"outcome": "queued"})
    [go] = [t for t in await gantry.tasks() if t.id != planned.id]
    assert (go.kind, go.best_of) == ("request", 3)
    assert "- step" in go.request


async def test_options_later_in_the_text_stay_text(gantry: Gantry) -> None:
    question = "why does --attempts 3 run only once?"
    assert await comment(gantry, f"@gantry ask {question}") == (200, {"outcome": "queued"})
    assert await tasks_of(gantry) == [("ask", question, None, None, 1)]


async def test_an_unknown_option_after_a_subcommand_is_text_as_it_is_before_one(
    gantry: Gantry,
) -> None:
    # Before a subcommand an unknown option ends the options and the rest is the request's
    # text (`@gantry --verbose review the docs`); right after one it ends them the same way.
    await comment(gantry, "@gantry --verbose review the docs")
    await comment(gantry, "@gantry ask --verbose --attempts 3 why")
    assert await tasks_of(gantry) == [
        ("request", "--verbose review the docs", None, None, 1),
        ("ask", "--verbose --attempts 3 why", None, None, 1),
    ]


async def test_a_branch_after_a_subcommand_is_text(gantry: Gantry) -> None:
    # `on <branch>:` goes before the subcommand; after `ask` it reads as prose.
    body = "@gantry ask on macOS: why does the path test fail?"
    assert await comment(gantry, body) == (200, {"outcome": "queued"})
    assert await tasks_of(gantry) == [
        ("ask", "on macOS: why does the path test fail?", None, None, 1)
    ]


async def test_a_subcommand_with_only_options_after_it_is_still_that_subcommand(
    gantry: Gantry,
) -> None:
    # `@gantry --agent claude status` answers the status; so does `status --agent claude`,
    # instead of starting a code task whose request is "status --agent claude".
    assert await comment(gantry, "@gantry status --agent claude") == (200, {"outcome": "answered"})
    await gantry.settle()
    assert await gantry.tasks() == []
    assert len(bot_replies(gantry)) == 1
