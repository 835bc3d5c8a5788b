"""End to end: `review`, `ask`, `plan` and `go` through the stand-in and the real engine.

The agent is a script that does what `GANTRY_MODE` asks: a review writes scripted findings,
ask and plan write their Markdown, code writes `fix.txt` from the prompt. Every mode but code
also scribbles in the checkout, which must never reach a branch.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from forge.rest_reviews import LineComment
from forge.server import Forge
from runner.store import TaskState
from tests.bot.conftest import OWNER, READER, REPO, WRITER, Gantry
from tests.e2e.conftest import (
    AGENTS,
    comment_on,
    config_with,
    git_show,
    running_gantry,
    wait_final,
)

BRANCH = "feature/divide"
APP = "def divide(a, b):\n    return a / b\n\n\nprint(divide(1, 0))\n"
FINDINGS = [
    {"path": "src/app.py", "line": 2, "severity": "high", "body": "Divides by zero when b is 0."},
    {"path": "./src/app.py", "line": 5, "severity": "medium", "body": "Crashes at import."},
    {"path": "old.txt", "line": 1, "severity": "low", "body": "Stale file; delete it."},
    {"path": "src/app.py", "line": 1, "severity": "info", "body": "Consider type hints."},
]
AGENT = f"""\
echo scribble > scribbled.txt
case "$GANTRY_MODE" in
  review) grep -q '"mode": "review"' "$GANTRY_TASK_FILE" || exit 3
    cat > "$GANTRY_OUTPUT_DIR/review.json" <<'JSON'
{json.dumps(FINDINGS)}
JSON
  ;;
  ask) printf 'The retry logic lives in `bot/`.\\nYou asked: %s\\n' "$GANTRY_PROMPT" \\
         > "$GANTRY_OUTPUT_DIR/answer.md" ;;
  plan) printf '1. Write fix.txt.\\n2. Check it exists.\\n' > "$GANTRY_OUTPUT_DIR/plan.md" ;;
  *) rm -f scribbled.txt; printf 'fixed: %s\\n' "$GANTRY_PROMPT" > fix.txt
     cp "$GANTRY_TASK_FILE" task.json ;;
esac
"""


def modes_gantry(
    forge: Forge, tmp_path: Path, extra: str = ""
) -> contextlib.AbstractAsyncContextManager[Gantry]:
    """A Gantry on a repository whose agent is the modes script."""
    files = {".github/gantry.yml": config_with(AGENT, extra), "AGENTS.md": AGENTS}
    return running_gantry(forge, tmp_path, files | {"old.txt": "old\n"})


async def pull_with_app(live: Gantry) -> tuple[int, str]:
    """A writer's PR that adds src/app.py (lines 1-5 are in its diff)."""
    head = await live.forge.commit_files(OWNER, REPO, BRANCH, {"src/app.py": APP})
    return live.forge.open_pull(OWNER, REPO, BRANCH, user=WRITER).issue.number, head


def reviews(live: Gantry, number: int) -> list[Any]:
    return [r for r in live.forge.state.reviews.values() if r.number == number]


def inline(live: Gantry, review_id: int) -> list[LineComment]:
    found = live.forge.state.comments.values()
    return [c for c in found if isinstance(c, LineComment) and c.review_id == review_id]


async def test_a_review_posts_one_review_and_a_re_review_repeats_nothing(
    forge: Forge, tmp_path: Path
) -> None:
    async with modes_gantry(forge, tmp_path) as live:
        number, head = await pull_with_app(live)
        await comment_on(live, number, "@gantry review", pull=True)
        [task] = await wait_final(live, 1)
        conversation = live.forge.comments(OWNER, REPO, number)
        assert task.state is TaskState.SUCCEEDED, conversation
        [first] = reviews(live, number)
        assert (first.user.login, first.state, first.commit_id) == (
            "gantry[bot]", "COMMENTED", head,
        )  # fmt: skip
        placed = sorted((c.path, c.line, c.side) for c in inline(live, first.id))
        assert placed == [("src/app.py", 2, "RIGHT"), ("src/app.py", 5, "RIGHT")]
        bodies = {c.line: c.body for c in inline(live, first.id)}
        assert bodies[2].startswith("🔴 **high**: Divides by zero when b is 0.")
        assert "`old.txt` line 1: Stale file; delete it." in first.body
        assert "Consider type hints" not in first.body  # info is below the default `low`
        assert "1 below the configured `review.min_severity`" in first.body
        [progress] = [c["body"] for c in conversation if c["user"] == "gantry[bot]"]
        assert "🚀 Done, reviewed: " in progress
        assert f"#pullrequestreview-{first.id}" in progress
        assert "- ⏭️ checks: not run in review mode" in progress

        await comment_on(live, number, "@gantry review", pull=True)
        tasks = await wait_final(live, 2)
        assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 2
        [_, second] = reviews(live, number)
        assert inline(live, second.id) == []
        assert "No new findings." in second.body
        assert "3 finding(s) already reported on an earlier review" in second.body
        assert "old.txt" not in second.body
        # Nothing a review did reached a branch; no pull request was opened.
        assert (await live.forge.branches(OWNER, REPO))[BRANCH] == head
        assert len(live.forge.pulls(OWNER, REPO)) == 1
        assert set(await live.forge.branches(OWNER, REPO)) == {"main", BRANCH}


def pull_request_event(live: Gantry, number: int, head: str, draft: bool) -> Any:
    payload = next(p for p in live.examples("pull_request") if p["action"] == "opened")
    pull = payload["pull_request"]
    pull.update(number=number, draft=draft, state="open")
    pull["head"].update(ref=BRANCH, sha=head)
    for end in (pull["head"], pull["base"]):
        end["repo"]["full_name"] = f"{OWNER}/{REPO}"
    return live.delivery("pull_request", payload, number=number)


async def test_review_auto_reviews_a_ready_pull_request_and_skips_a_draft(
    forge: Forge, tmp_path: Path
) -> None:
    async with modes_gantry(forge, tmp_path, "review: {auto: true, min_severity: high}\n") as live:
        number, head = await pull_with_app(live)
        live.forge.state.pull(live.forge.repo(OWNER, REPO), number).draft = True  # type: ignore[union-attr]
        status, answer = await live.post(pull_request_event(live, number, head, draft=True))
        assert status == 200
        assert "queued" not in str(answer["outcome"])
        assert await live.tasks() == []

        status, answer = await live.post(pull_request_event(live, number, head, draft=False))
        assert "queued" in str(answer["outcome"])
        [task] = await wait_final(live, 1)
        assert (task.state, task.kind, task.requester) == (TaskState.SUCCEEDED, "review", WRITER)
        [review] = reviews(live, number)
        assert [(c.path, c.line) for c in inline(live, review.id)] == [("src/app.py", 2)]
        assert "3 below the configured `review.min_severity`" in review.body


async def test_ask_posts_the_answer_and_opens_nothing(forge: Forge, tmp_path: Path) -> None:
    async with modes_gantry(forge, tmp_path) as live:
        await comment_on(live, live.issue_number, "@gantry ask where is the retry logic?")
        [task] = await wait_final(live, 1)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        assert task.state is TaskState.SUCCEEDED, comments
        [answer] = [c["body"] for c in comments if "You asked" in c["body"]]
        assert answer == (
            "@alice asked:\n\n> where is the retry logic?\n\n"
            "The retry logic lives in `bot/`.\nYou asked: where is the retry logic?"
        )
        assert live.forge.pulls(OWNER, REPO) == []
        assert set(await live.forge.branches(OWNER, REPO)) == {"main"}


async def test_a_reader_cannot_ask_review_or_plan(forge: Forge, tmp_path: Path) -> None:
    async with modes_gantry(forge, tmp_path) as live:
        number, _ = await pull_with_app(live)
        for body in ("@gantry ask why?", "@gantry review", "@gantry plan do it"):
            payload = live.examples("issue_comment")[0]
            payload["issue"]["pull_request"] = {"url": "rewritten"}
            payload["comment"]["id"] = live.forge.add_comment(OWNER, REPO, number, body, READER)
            delivery = live.delivery(
                "issue_comment", payload, body=body, number=number, sender=READER
            )
            assert await live.post(delivery) == (200, {"outcome": "refused"})
        assert await live.tasks() == []


async def test_plan_then_go_runs_the_edited_plan(forge: Forge, tmp_path: Path) -> None:
    async with modes_gantry(forge, tmp_path) as live:
        number = live.issue_number
        await comment_on(live, number, "@gantry plan make the date test pass")
        [planned] = await wait_final(live, 1)
        comments = live.forge.comments(OWNER, REPO, number)
        assert planned.state is TaskState.SUCCEEDED, comments
        [plan] = [c for c in comments if "<!-- gantry:plan task=" in c["body"]]
        assert plan["body"].startswith("1. Write fix.txt.\n2. Check it exists.\n\n---\n")
        assert live.forge.pulls(OWNER, REPO) == []

        # A writer edits the plan before saying go: the edited plan is the one that runs.
        record = live.forge.state.comments[plan["id"]]
        record.body = record.body.replace("2. Check it exists.", "2. Also check midnight.")
        await comment_on(live, number, "@gantry go")
        tasks = await wait_final(live, 2)
        assert tasks[1].state is TaskState.SUCCEEDED, live.forge.comments(OWNER, REPO, number)
        [pull] = live.forge.pulls(OWNER, REPO)
        pushed = (await live.forge.branches(OWNER, REPO))[pull.head]
        assert await git_show(live.forge, "show", f"{pushed}:fix.txt") == (
            "fixed: make the date test pass\n\nCarry out this plan, agreed on the thread:\n\n"
            "1. Write fix.txt.\n2. Also check midnight.\n"
        )
        task_json = json.loads(await git_show(live.forge, "show", f"{pushed}:task.json"))
        assert (task_json["mode"], task_json["requester"]) == ("code", WRITER)


async def test_go_without_a_plan_says_so(forge: Forge, tmp_path: Path) -> None:
    async with modes_gantry(forge, tmp_path) as live:
        payload = live.examples("issue_comment")[0]
        payload["issue"].pop("pull_request", None)
        number = live.issue_number
        payload["comment"]["id"] = live.forge.add_comment(OWNER, REPO, number, "@gantry go", WRITER)
        delivery = live.delivery("issue_comment", payload, body="@gantry go", number=number)
        assert await live.post(delivery) == (200, {"outcome": "refused"})
        await live.settle()
        replies = [c["body"] for c in live.forge.comments(OWNER, REPO, number)]
        assert any("I found no plan on this thread" in r for r in replies)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("true", "the agent wrote no review.json in $GANTRY_OUTPUT_DIR"),
        (
            'echo \'[{"path": "src/app.py", "line": "two"}]\' > "$GANTRY_OUTPUT_DIR/review.json"',
            "review.json does not follow the schema: [0].line: Input should be a valid integer",
        ),
        ('ln -s /etc/passwd "$GANTRY_OUTPUT_DIR/review.json"', "not a regular file"),
        (
            'truncate -s 1G "$GANTRY_OUTPUT_DIR/review.json"',
            "over the limit of 262,144",
        ),
    ],
)
async def test_bad_review_output_fails_collect_and_posts_no_review(
    forge: Forge, tmp_path: Path, agent: str, reason: str
) -> None:
    files = {".github/gantry.yml": config_with(agent), "AGENTS.md": AGENTS}
    async with running_gantry(forge, tmp_path, files) as live:
        number, _ = await pull_with_app(live)
        await comment_on(live, number, "@gantry review", pull=True)
        [task] = await wait_final(live, 1)
        assert task.state is TaskState.FAILED
        conversation = live.forge.comments(OWNER, REPO, number)
        [progress] = [c["body"] for c in conversation if c["user"] == "gantry[bot]"]
        assert "😕 Failed in the **collect** phase: " in progress
        assert reason in progress
        assert "root:x:0:0" not in progress
        assert reviews(live, number) == []
