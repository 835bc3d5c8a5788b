"""A requester's `--agent`/`--model` pick: allowed ones are stored with the task, others
get a reply naming what is allowed, and no task."""

from __future__ import annotations

from tests.bot.conftest import OWNER, REPO, Gantry
from tests.bot.test_intake import bot_replies, comment

CONFIG = """\
agent:
  preset: codex
  model: gpt-5-codex
  allow: [claude, "codex:gpt-5-mini"]
"""


async def test_an_allowed_pick_is_stored_with_the_task_and_kept_by_retry(gantry: Gantry) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    answer = await comment(gantry, "@gantry --agent claude --model claude-sonnet-4-5 fix it")
    assert answer == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.request, task.agent, task.model) == ("fix it", "claude", "claude-sonnet-4-5")
    await comment(gantry, "@gantry cancel")
    await comment(gantry, "@gantry retry")
    retried = [t for t in await gantry.tasks() if t.id != task.id]
    assert [(t.agent, t.model) for t in retried] == [("claude", "claude-sonnet-4-5")]


async def test_a_pick_not_allowed_gets_a_reply_and_no_task(gantry: Gantry) -> None:
    await gantry.forge.commit_files(OWNER, REPO, "main", {".github/gantry.yml": CONFIG})
    answer = await comment(gantry, "@gantry --model gpt-4o fix it")
    assert answer == (200, {"outcome": "refused"})
    await gantry.settle()
    assert await gantry.tasks() == []
    [reply] = bot_replies(gantry)
    assert "codex with model gpt-4o is not allowed here" in reply
    assert "`codex:gpt-5-codex`, `claude`, `codex:gpt-5-mini`" in reply


async def test_without_a_pick_the_config_decides_at_run_time(gantry: Gantry) -> None:
    answer = await comment(gantry, "@gantry fix it")
    assert answer == (200, {"outcome": "queued"})
    [task] = await gantry.tasks()
    assert (task.agent, task.model) == (None, None)
