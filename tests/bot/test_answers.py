"""Posting a review when the pull request moved on after the agent read it."""

from __future__ import annotations

from bot.answers import GitHubAnswers
from bot.commands import Command, Kind
from bot.intake import new_task
from bot.pull_requests import PullHead
from bot.triggers import Trigger
from config.repo_config import RepoConfig
from forge.rest_reviews import LineComment
from runner.modes import Answer, Finding, Mode
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry

TWO = "a = 1\nb = 2\n"
FIVE = TWO + "c = 3\nd = 4\ne = 5\n"


async def test_a_line_gone_from_the_reviewed_commit_moves_the_review_into_its_body(
    gantry: Gantry,
) -> None:
    forge = gantry.forge
    reviewed = await forge.commit_files(OWNER, REPO, "moving", {"lib.py": TWO})
    number = forge.open_pull(OWNER, REPO, "moving", user=WRITER).issue.number
    await forge.commit_files(OWNER, REPO, "moving", {"lib.py": FIVE})  # pushed meanwhile
    record = forge.repo(OWNER, REPO)
    trigger = Trigger(
        "issue_comment", f"{OWNER}/{REPO}", gantry.installation_id, "", "main", number,
        True, "t", 1, "issue_comment", WRITER, "User", "@gantry review",
    )  # fmt: skip
    head = PullHead("moving", reviewed, False)
    task = await gantry.services.store.add_task(new_task(trigger, Command(Kind.REVIEW), head), "d1")
    gh = gantry.services.tokens.client(gantry.installation_id)
    findings = (Finding("lib.py", 2, "high", "on both"), Finding("lib.py", 5, "high", "new"))
    url = await GitHubAnswers(gh, task, "gantry").post(
        Answer(Mode.REVIEW, findings=findings), RepoConfig()
    )
    [review] = [r for r in forge.state.reviews.values() if r.repo is record]
    assert url.endswith(f"#pullrequestreview-{review.id}")
    assert review.commit_id == reviewed
    assert [c for c in forge.state.comments.values() if isinstance(c, LineComment)] == []
    assert "`lib.py` line 2: on both" in review.body
    assert "`lib.py` line 5: new" in review.body
