"""End to end: `@gantry --attempts N` runs N attempts in containers of their own and publishes
the one whose checks pass; the repository's `agent.max_attempts` caps N."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from bot.task_page import signed_url
from forge.server import Forge
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, SECRET, Gantry
from tests.e2e.conftest import (
    comment_on,
    config_with,
    git_show,
    live_containers,
    running_gantry,
    wait_final,
)

# Attempt 1 writes the smallest change and attempt 3 a wrong one: only attempt 2's passes the
# check, though its diff is the largest.
AGENT = """\
echo "attempt $GANTRY_ATTEMPT of $GANTRY_ATTEMPTS"
echo "gateway token $(printf %s "$OPENAI_API_KEY" | sha256sum | cut -c1-16)"
case "$GANTRY_ATTEMPT" in
  1) echo no > answer.txt ;;
  2) echo right > answer.txt && printf 'why\\nit\\nworks\\n' > notes.txt ;;
  *) echo wrong > answer.txt && echo guess > guess.txt ;;
esac
"""
CHECK_ANSWER = """\
# Agents

## Testing

```sh
grep -qx right answer.txt
```
"""
SETUP = "\n## Setup\n\n```sh\necho setting up\n```\n"


def bot_comments(gantry: Gantry, number: int) -> list[str]:
    comments = gantry.forge.comments(OWNER, REPO, number)
    return [c["body"] for c in comments if c["user"] == "gantry[bot]"]


async def task_page(gantry: Gantry, task_id: int) -> str:
    link = signed_url("https://gantry.example", SECRET, task_id)
    async with aiohttp.ClientSession() as session:
        url = gantry.server.make_url(link.removeprefix("https://gantry.example"))
        async with session.get(url) as response:
            assert response.status == 200
            return await response.text()


async def test_three_attempts_where_only_the_second_passes_its_checks_publish_the_second(
    forge: Forge, tmp_path: Path
) -> None:
    files = {".github/gantry.yml": config_with(AGENT), "AGENTS.md": CHECK_ANSWER + SETUP}
    async with running_gantry(forge, tmp_path, files) as gantry:
        await comment_on(gantry, gantry.issue_number, "@gantry --attempts 3 answer it")
        [task] = await wait_final(gantry, 1)
        assert task.state is TaskState.SUCCEEDED, bot_comments(gantry, gantry.issue_number)
        assert (task.best_of, task.request) == (3, "answer it")

        [pull] = forge.pulls(OWNER, REPO)
        head = (await forge.branches(OWNER, REPO))[pull.head]
        assert await git_show(forge, "show", f"{head}:answer.txt") == "right\n"
        names = await git_show(forge, "show", "--name-status", "--format=", head)
        assert sorted(names.split()) == ["A", "A", "answer.txt", "notes.txt"]
        body = pull.issue.body or ""
        assert "Attempt 2 of 3 was published: its checks passed." in body
        assert "| 1 | ❌ failed | +1 -0 in 1 file | not published |" in body
        assert "| **2** | ✅ passed | +4 -0 in 2 files | 🏆 published |" in body
        assert "| 3 | ❌ failed | +2 -0 in 2 files | not published |" in body
        assert "| ✅ | `grep -qx right answer.txt` |" in body  # the winner's own checks
        assert not pull.draft

        [progress] = bot_comments(gantry, gantry.issue_number)
        assert "🚀 Done:" in progress
        assert re.search(r"- ✅ environment \([0-9.]+ s\): 3 attempts\n", progress)
        assert "- ✅ checks" in progress  # judged by the published attempt's checks
        assert "Attempt 2 of 3 was published" in progress

        page = await task_page(gantry, task.id)
        assert "Attempt 1: not published (+1 -0 in 1 files)" in page
        assert "Attempt 2: published (+4 -0 in 2 files)" in page
        assert "Attempt 3: not published (+2 -0 in 2 files)" in page
        for line in ("+no", "+right", "+wrong", "+guess"):  # every attempt's diff is kept
            assert line in page
        # Each attempt was told which it is, and wrote in a workspace of its own: the diffs
        # above hold none of the others' files.
        told = re.findall(r"\[agent\] \[attempt (\d)\] attempt \1 of 3\n", page)
        assert sorted(told) == ["1", "2", "3"]
        # ... and reached the model gateway with a token (and a budget) of its own.
        tokens = re.findall(r"\[attempt \d\] gateway token ([0-9a-f]{16})\n", page)
        assert len(tokens) == 3
        assert len(set(tokens)) == 3
        assert "e3b0c44298fc1c14" not in tokens  # the hash of an empty token
        # One environment: setup ran once, the other attempts started from its image.
        assert len(re.findall(r"\[setup\] \[attempt \d\] setting up\n", page)) == 1
        assert live_containers(gantry) == []


async def test_asking_for_more_attempts_than_allowed_runs_the_most_allowed_and_says_so(
    forge: Forge, tmp_path: Path
) -> None:
    """Capped by `agent.max_attempts`; and when no attempt changes anything, no PR."""
    config = config_with('echo "attempt $GANTRY_ATTEMPT changes nothing"')
    config = config.replace("agent:\n", "agent:\n  max_attempts: 2\n", 1)
    files = {".github/gantry.yml": config, "AGENTS.md": CHECK_ANSWER, "answer.txt": "right\n"}
    async with running_gantry(forge, tmp_path, files) as gantry:
        await comment_on(gantry, gantry.issue_number, "@gantry --attempts 5 answer it")
        [task] = await wait_final(gantry, 1)
        assert task.state is TaskState.SUCCEEDED, bot_comments(gantry, gantry.issue_number)
        assert forge.pulls(OWNER, REPO) == []
        [progress] = bot_comments(gantry, gantry.issue_number)
        assert "None of the 2 attempts changed anything, so there is no pull request." in progress
        assert (
            "Asked for 5 attempts; 2 ran, the most `agent.max_attempts` in .github/gantry.yml "
            "allows." in progress
        )
        assert "| 1 | ✅ passed | no changes | not published |" in progress
        assert "| 2 | ✅ passed | no changes | not published |" in progress
        assert "| 3 |" not in progress
        page = await task_page(gantry, task.id)
        assert "attempt 2 changes nothing" in page
        assert "attempt 3" not in page


async def test_without_a_cache_each_attempt_sets_up_on_its_own_and_all_of_them_run(
    forge: Forge, tmp_path: Path
) -> None:
    """`cache.ttl: 0s`: an image expires as it is made, so attempts cannot share one; each
    runs setup, and none loses its image to another's lookup."""
    config = config_with(AGENT, "cache: {ttl: 0s}\n")
    files = {".github/gantry.yml": config, "AGENTS.md": CHECK_ANSWER + SETUP}
    async with running_gantry(forge, tmp_path, files) as gantry:
        await comment_on(gantry, gantry.issue_number, "@gantry --attempts 3 answer it")
        [task] = await wait_final(gantry, 1)
        assert task.state is TaskState.SUCCEEDED, bot_comments(gantry, gantry.issue_number)
        [pull] = forge.pulls(OWNER, REPO)
        assert "Attempt 2 of 3 was published: its checks passed." in (pull.issue.body or "")
        page = await task_page(gantry, task.id)
        setups = re.findall(r"\[setup\] \[attempt (\d)\] setting up\n", page)
        assert sorted(setups) == ["1", "2", "3"]
        assert live_containers(gantry) == []


# Attempt 1 changes a file and then its agent fails; attempt 2's change touches
# .github/workflows/ and is refused at collect; attempt 3 changes nothing.
SOME_FAIL = """\
case "$GANTRY_ATTEMPT" in
  1) echo half > half.txt; exit 7 ;;
  2) mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml ;;
  *) true ;;
esac
"""


async def test_attempts_that_failed_are_never_reported_as_attempts_that_changed_nothing(
    forge: Forge, tmp_path: Path
) -> None:
    """No attempt published and some failed: the task failed (as one failed attempt would),
    and the comment names each failure rather than saying nothing changed."""
    files = {".github/gantry.yml": config_with(SOME_FAIL), "AGENTS.md": "# A\n"}
    async with running_gantry(forge, tmp_path, files) as gantry:
        asked = await comment_on(gantry, gantry.issue_number, "@gantry --attempts 3 fix it")
        [task] = await wait_final(gantry, 1)
        [progress] = bot_comments(gantry, gantry.issue_number)
        assert task.state is TaskState.FAILED, progress
        assert forge.pulls(OWNER, REPO) == []
        assert "changed anything" not in progress
        assert (
            "😕 Failed: No attempt produced a change that could be published: attempt 1 failed "
            "(agent: the agent exit code 7), attempt 2 failed (collect: the change touches "
            ".github/workflows/x.yml" in progress
        )
        assert "), attempt 3 changed nothing." in progress
        assert "### Attempts\n\nNo attempt produced a change that could be published.\n" in progress
        assert "| 1 | — | — | failed in agent: the agent exit code 7 |" in progress
        assert "| 3 | ✅ none configured | no changes | not published |" in progress
        assert "- ⏭️ publish: nothing to publish" in progress
        assert [c for c, _ in forge.reactions(asked)][-1] == "confused"
        assert live_containers(gantry) == []
