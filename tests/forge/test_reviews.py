"""Pull request reviews in the stand-in: inline comments only on lines the diff shows."""

from __future__ import annotations

from typing import Any

import pytest
from gidgethub import BadRequest

from forge.rest_reviews import hunk_at
from tests.forge.conftest import OWNER, REPO, Seeded

REPO_API = f"/repos/{OWNER}/{REPO}"
# main has "# widgets\n"; the PR rewrites it into ten lines, so lines 1-10 are in the diff.
TEN = "".join(f"line {n}\n" for n in range(1, 11))
PATCH = "@@ -1,2 +1,3 @@\n a\n-b\n+B\n+C\n@@ -10,1 +11,1 @@\n-x\n+y"


def test_hunk_at_finds_shown_lines_on_each_side() -> None:
    assert hunk_at(PATCH, 1, "RIGHT") == "@@ -1,2 +1,3 @@\n a"
    assert hunk_at(PATCH, 3, "RIGHT") == "@@ -1,2 +1,3 @@\n a\n-b\n+B\n+C"
    assert hunk_at(PATCH, 2, "LEFT") == "@@ -1,2 +1,3 @@\n a\n-b"
    assert hunk_at(PATCH, 11, "RIGHT") == "@@ -10,1 +11,1 @@\n-x\n+y"
    assert hunk_at(PATCH, 4, "RIGHT") is None  # between the hunks
    assert hunk_at(PATCH, 3, "LEFT") is None
    assert hunk_at(PATCH, 10, "RIGHT") is None  # line 10 of the head is not shown


async def opened(seeded: Seeded) -> int:
    await seeded.forge.commit_files(OWNER, REPO, "topic", {"README.md": TEN, "new.txt": "n\n"})
    return seeded.forge.open_pull(OWNER, REPO, "topic", title="Topic").issue.number


def review(comments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event": "COMMENT", "body": "Looks fine", "comments": comments}


async def test_a_review_with_inline_comments_is_listed_with_them(seeded: Seeded) -> None:
    number = await opened(seeded)
    files = [f async for f in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/files")]
    assert {f["filename"]: f["patch"][:16] for f in files} == {
        "README.md": "@@ -1 +1,10 @@\n-",
        "new.txt": "@@ -0,0 +1 @@\n+n",
    }
    comment = {"path": "README.md", "line": 7, "side": "RIGHT", "body": "seven"}
    made = await seeded.gh.post(f"{REPO_API}/pulls/{number}/reviews", data=review([comment]))
    assert (made["state"], made["body"]) == ("COMMENTED", "Looks fine")
    assert made["html_url"].endswith(f"/pull/{number}#pullrequestreview-{made['id']}")
    [listed] = [r async for r in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/reviews")]
    assert listed["id"] == made["id"]
    [inline] = [c async for c in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/comments")]
    assert (inline["path"], inline["line"], inline["side"], inline["body"]) == (
        "README.md", 7, "RIGHT", "seven",
    )  # fmt: skip
    assert inline["pull_request_review_id"] == made["id"]
    assert inline["diff_hunk"].endswith("+line 7")
    assert inline["user"]["login"] == "gantry[bot]"


@pytest.mark.parametrize(
    ("comment", "error"),
    [
        ({"path": "README.md", "line": 11, "body": "past the end"}, "Line could not be resolved"),
        ({"path": "LICENSE", "line": 1, "body": "not changed"}, "Path could not be resolved"),
        ({"path": "README.md", "line": 2, "side": "LEFT", "body": "x"}, "Line could not be"),
    ],
)
async def test_a_comment_off_the_diff_refuses_the_whole_review(
    seeded: Seeded, comment: dict[str, Any], error: str
) -> None:
    number = await opened(seeded)
    good = {"path": "new.txt", "line": 1, "body": "fine"}
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.post(f"{REPO_API}/pulls/{number}/reviews", data=review([good, comment]))
    assert caught.value.status_code == 422
    assert any(e.startswith(error) for e in caught.value.errors or [])  # type: ignore[attr-defined]
    assert [r async for r in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/reviews")] == []
    assert [c async for c in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/comments")] == []


async def test_the_stand_in_holds_reviews_to_the_openapi_description(seeded: Seeded) -> None:
    number = await opened(seeded)
    bad = {"event": "COMMENT", "body": "x", "comments": [{"line": 1, "body": "no path"}]}
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.post(f"{REPO_API}/pulls/{number}/reviews", data=bad)
    assert caught.value.status_code == 422
    [violation] = seeded.forge.take_violations()
    assert "'path' is a required property" in violation.reason
    assert [r async for r in seeded.gh.getiter(f"{REPO_API}/pulls/{number}/reviews")] == []
