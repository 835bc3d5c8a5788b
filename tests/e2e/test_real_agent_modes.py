"""`review` and `ask` through real agent CLIs and the model stand-in.

The preset tells the CLI its mode; the stand-in's scripted tool call writes the output file
where the instructions say, and Gantry posts it: one review with its inline comment, or a
comment with the answer.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from forge.model_script import Script
from forge.models import ModelStandIn
from forge.rest_reviews import LineComment
from forge.server import Forge
from runner.store import TaskState
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry
from tests.e2e.conftest import comment_on, running_gantry, wait_final
from tests.e2e.test_real_agents import agents_image, config, real_key, stand_in

__all__ = ["agents_image", "real_key", "stand_in"]

OUTPUT = "/tmp/gantry/output"  # the container's GANTRY_OUTPUT_DIR
RULES = "## Code review\n\nFlag every division that can divide by zero.\n"
APP = "def divide(a, b):\n    return a / b\n"
FINDINGS = [
    {"path": "src/app.py", "line": 2, "severity": "high", "body": "b may be 0."},
    {"path": "README.md", "line": 1, "severity": "low", "body": "Document divide()."},
]


def sent_text(stand_in: ModelStandIn) -> str:
    """Everything the CLI sent the model, as one string."""
    return "\n".join(json.dumps(r.body) for r in stand_in.model_requests())


def gantry(
    forge: Forge, tmp_path: Path, stand_in: ModelStandIn, key: str, preset: str = "codex"
) -> contextlib.AbstractAsyncContextManager[Gantry]:
    """A Gantry whose OpenAI provider is the stand-in, on a repository with review rules."""
    files = {".github/gantry.yml": config(preset), "AGENTS.md": RULES, "README.md": "# x\n"}
    return running_gantry(
        forge,
        tmp_path,
        files,
        openai_base_url=f"{stand_in.url()}/v1",
        openai_api_key=key,
        anthropic_base_url=stand_in.url(),
        anthropic_api_key=key,
    )


@pytest.mark.usefixtures("agents_image")
async def test_codex_reviews_a_pull_request(
    forge: Forge, tmp_path: Path, stand_in: ModelStandIn, real_key: str
) -> None:
    stand_in.script = Script(
        path=f"{OUTPUT}/review.json", content=json.dumps(FINDINGS), answer="Review written."
    )
    async with gantry(forge, tmp_path, stand_in, real_key) as live:
        head = await live.forge.commit_files(OWNER, REPO, "divide", {"src/app.py": APP})
        number = live.forge.open_pull(OWNER, REPO, "divide", user=WRITER).issue.number
        await comment_on(live, number, "@gantry review", pull=True)
        [task] = await wait_final(live, 1, seconds=300)
        comments = live.forge.comments(OWNER, REPO, number)
        assert task.state is TaskState.SUCCEEDED, comments
        [review] = live.forge.state.reviews.values()
        found = [c for c in live.forge.state.comments.values() if isinstance(c, LineComment)]
        assert (review.commit_id, review.user.login) == (head, "gantry[bot]")
        assert [(c.path, c.line, c.review_id) for c in found] == [("src/app.py", 2, review.id)]
        assert "b may be 0." in found[0].body
        assert "`README.md` line 1: Document divide()." in review.body
    text = sent_text(stand_in)
    assert "review mode" in text
    assert "Flag every division that can divide by zero." in text  # AGENTS.md's review rules
    assert f"{OUTPUT}/review.json" in text


@pytest.mark.usefixtures("agents_image")
@pytest.mark.parametrize("preset", ["codex", "claude"])
async def test_a_real_cli_answers_a_question(
    forge: Forge, tmp_path: Path, stand_in: ModelStandIn, real_key: str, preset: str
) -> None:
    answer = "Division lives in `src/app.py`.\n"
    stand_in.script = Script(path=f"{OUTPUT}/answer.md", content=answer, answer="Answered.")
    async with gantry(forge, tmp_path, stand_in, real_key, preset) as live:
        await comment_on(live, live.issue_number, "@gantry ask where is division done?")
        [task] = await wait_final(live, 1, seconds=300)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        assert task.state is TaskState.SUCCEEDED, comments
        bodies = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
        assert any(
            b.endswith("> where is division done?\n\nDivision lives in `src/app.py`.")
            for b in bodies
        )
        assert live.forge.pulls(OWNER, REPO) == []
    assert "ask mode" in sent_text(stand_in)
