"""Pull request reviews and their inline comments, refused like GitHub refuses them.

A review's inline comment must sit on a line its diff shows: for the RIGHT side an added or
context line of the head's version, for the LEFT side a removed or context line of the base's.
Anything else is GitHub's 422, and the whole review is refused (nothing is half-created).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.git_repo import branch_heads, file_patch, resolve_commit
from forge.rest import fail, json_response, paginate, read_json, repo_of
from forge.rest_pulls import _pull_of, _render_review_comment
from forge.state import Comment, Pull, Repo, Review

routes = web.RouteTableDef()

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
EVENTS = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
UNRESOLVED = "Unprocessable Entity"


@dataclass
class LineComment(Comment):
    """A review comment on a line of the diff, made as part of a review."""

    path: str = ""
    line: int = 0
    side: str = "RIGHT"
    commit_id: str = ""
    review_id: int = 0
    diff_hunk: str = ""


def hunk_at(patch: str, line: int, side: str) -> str | None:
    """The hunk of `patch` up to `line` on `side`, or None when the diff does not show it."""
    hunk: list[str] = []
    old = new = 0
    for text in patch.split("\n"):
        header = HUNK_HEADER.match(text)
        if header:
            hunk, old, new = [text], int(header[1]), int(header[3])
            continue
        hunk.append(text)
        mark = text[:1]
        here = (old, mark in " -") if side == "LEFT" else (new, mark in " +")
        if here == (line, True):
            return "\n".join(hunk)
        old += mark in " -"
        new += mark in " +"
    return None


async def _diff_hunk(repo: Repo, pull: Pull, head: str, spec: dict[str, Any]) -> str:
    """Where an inline comment goes, or GitHub's 422 when the diff does not show its line."""
    base = (await branch_heads(repo.path)).get(pull.base)
    path, line, side = str(spec.get("path", "")), spec.get("line"), spec.get("side", "RIGHT")
    if base is None or not isinstance(line, int):
        fail(422, UNRESOLVED, errors=["Line could not be resolved"])
    patch = await file_patch(repo.path, base, head, (path,))
    if not patch:
        fail(422, UNRESOLVED, errors=["Path could not be resolved"])
    hunk = hunk_at(patch, line, str(side))
    if hunk is None:
        fail(422, UNRESOLVED, errors=["Line could not be resolved"])
    return hunk


def _render_review(request: web.Request, review: Review) -> render.JSON:
    urls = context_of(request).urls
    html = f"{urls.repo_html(review.repo)}/pull/{review.number}#pullrequestreview-{review.id}"
    pull_api = f"{urls.repo_api(review.repo)}/pulls/{review.number}"
    return {
        "id": review.id,
        "node_id": render.node_id("PullRequestReview", review.id),
        "user": render.user(review.user, urls),
        "body": review.body,
        "state": review.state,
        "html_url": html,
        "pull_request_url": pull_api,
        "_links": {"html": {"href": html}, "pull_request": {"href": pull_api}},
        "submitted_at": render.timestamp(review.submitted_at),
        "commit_id": review.commit_id,
        "author_association": "CONTRIBUTOR",
    }


def _render_line_comment(request: web.Request, comment: Comment) -> render.JSON:
    body = _render_review_comment(request, comment)
    if isinstance(comment, LineComment):
        body.update(
            path=comment.path,
            line=comment.line,
            original_line=comment.line,
            side=comment.side,
            commit_id=comment.commit_id,
            original_commit_id=comment.commit_id,
            pull_request_review_id=comment.review_id,
            diff_hunk=comment.diff_hunk,
        )
    return body


@routes.post("/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
async def create_review(request: web.Request) -> web.Response:
    """A submitted review with its inline comments, all checked before any is kept."""
    repo, token = repo_of(request)
    pull = _pull_of(request, repo)
    body = await read_json(request)
    event = body.get("event")
    if event not in EVENTS:
        fail(422, UNRESOLVED, errors=["The review needs an event (pending reviews are unused)"])
    heads = await branch_heads(repo.path)
    commit = str(body.get("commit_id") or heads.get(pull.head, ""))
    if await resolve_commit(repo.path, commit) != commit:
        fail(422, UNRESOLVED, errors=["commit_id is not part of the pull request"])
    specs = [dict(c) for c in body.get("comments") or []]
    if event != "APPROVE" and not body.get("body") and not specs:
        fail(422, UNRESOLVED, errors=["Review body is required for this event"])
    hunks = [await _diff_hunk(repo, pull, commit, spec) for spec in specs]
    state = context_of(request).state
    author = token.installation.app.bot
    now = state.clock()
    review = Review(
        state.next_id(), repo, pull.issue.number, author, str(body.get("body") or ""),
        EVENTS[str(event)], commit, now,
    )  # fmt: skip
    state.reviews[review.id] = review
    for spec, hunk in zip(specs, hunks, strict=True):
        comment = LineComment(
            state.next_id(), repo, pull.issue.number, str(spec["body"]), author, now, now,
            "review", str(spec["path"]), int(spec["line"]), str(spec.get("side", "RIGHT")),
            commit, review.id, hunk,
        )  # fmt: skip
        state.comments[comment.id] = comment
    return json_response(_render_review(request, review))


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
async def list_reviews(request: web.Request) -> web.Response:
    """A pull request's reviews, oldest first."""
    repo, _ = repo_of(request)
    pull = _pull_of(request, repo)
    found = [
        _render_review(request, r)
        for r in context_of(request).state.reviews.values()
        if r.repo is repo and r.number == pull.issue.number
    ]
    return paginate(request, found)


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/comments")
async def list_review_comments(request: web.Request) -> web.Response:
    """A pull request's review comments, oldest first."""
    repo, _ = repo_of(request)
    pull = _pull_of(request, repo)
    found = [
        _render_line_comment(request, c)
        for c in context_of(request).state.comments.values()
        if c.repo is repo and c.number == pull.issue.number and c.kind == "review"
    ]
    return paginate(request, found)
