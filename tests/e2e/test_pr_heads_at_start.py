"""End to end: a review (or an answer) asked on a pull request that moves before the task
starts is of the pull request as it is when the task starts, and says which commit it read."""

from __future__ import annotations

from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry
from tests.e2e.conftest import comment_on, config_with, set_config, wait_final
from tests.e2e.test_follow_up_heads import bot_comments, until_agent_runs
from tests.e2e.test_modes import inline

BRANCH = "feature/version"
# Every mode reports what it read: the version file of the checkout, and the task's base.
AGENT = """\
case "$GANTRY_PROMPT" in *slowly*) sleep 6;; esac
seen="saw $(cat version.txt) at $(grep -o '"base_sha": "[0-9a-f]*"' "$GANTRY_TASK_FILE")"
case "$GANTRY_MODE" in
  review) printf '[{"path": "version.txt", "line": 1, "severity": "high", "body": "%s"}]' \\
            "$(echo "$seen" | tr -d '"')" > "$GANTRY_OUTPUT_DIR/review.json" ;;
  ask) echo "$seen" > "$GANTRY_OUTPUT_DIR/answer.md" ;;
esac
"""


async def test_a_review_queued_while_the_pull_request_moves_reviews_its_head_at_start(
    live: Gantry,
) -> None:
    await set_config(live, config_with(AGENT))
    first = await live.forge.commit_files(OWNER, REPO, BRANCH, {"version.txt": "v1\n"})
    number = live.forge.open_pull(OWNER, REPO, BRANCH, user=WRITER).issue.number
    # A slow question holds the thread: the review asked meanwhile waits its turn.
    await comment_on(live, number, "@gantry ask slowly which version is this?", pull=True)
    await until_agent_runs(live, number)
    await comment_on(live, number, "@gantry review", pull=True)
    moved = await live.forge.commit_files(OWNER, REPO, BRANCH, {"version.txt": "v2\n"})
    asked, reviewed = await wait_final(live, 2)
    assert [asked.state, reviewed.state] == [TaskState.SUCCEEDED] * 2, bot_comments(live, number)
    assert reviewed.head_sha == first  # the head when the review was asked for

    [review] = [r for r in live.forge.state.reviews.values() if r.number == number]
    # The review is of the head when it started, on that commit, and says so.
    assert review.commit_id == moved
    assert f"reviewed at `{moved[:7]}`" in review.body, review.body
    found = [review.body, *(c.body for c in inline(live, review.id))]
    assert any(f"saw v2 at base_sha: {moved}" in body for body in found), found
    # The question, asked before the push, read the head it started on and says which.
    [answer] = [c for c in bot_comments(live, number) if "asked:" in c]
    assert f'saw v1 at "base_sha": "{first}"' in answer, answer
    assert f"Answered on `{first[:7]}`" in answer
