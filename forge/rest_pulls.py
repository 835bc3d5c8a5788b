"""Pull requests and check runs; head SHAs are always read from the bare repo."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.git_repo import branch_heads, diff_files, file_patch, resolve_commit
from forge.rest import (
    NOT_INTEGRATION,
    fail,
    int_param,
    invalid,
    json_response,
    paginate,
    read_json,
    repo_of,
)
from forge.state import CheckRun, Comment, Pull, PullFields, Repo

routes = web.RouteTableDef()

PULL_EDITABLE = ("title", "body", "base", "maintainer_can_modify")
CHECK_RUN_FIELDS = ("name", "details_url", "external_id", "started_at", "completed_at")


def _render_pull(request: web.Request, pull: Pull, heads: dict[str, str]) -> render.JSON:
    urls = context_of(request).urls
    return render.pull(pull, urls, heads.get(pull.head, ""), heads.get(pull.base, ""))


def _branch_name(repo: Repo, head: str) -> str:
    """`owner:branch` or `branch` → `branch` (the API opens no fork PRs; `open_pull` can)."""
    owner, sep, branch = head.partition(":")
    if sep and owner.lower() != repo.owner.login.lower():
        invalid("PullRequest", "head")
    return branch if sep else head


def _head_matches(head: str, pull: Pull) -> bool:
    """Whether `owner:branch` (or `branch`) names the pull's head; a fork's has its owner."""
    owner, sep, branch = head.rpartition(":")
    holder = (pull.head_repo or pull.issue.repo).owner.login
    return branch == pull.head and (not sep or owner.lower() == holder.lower())


def _custom_error(message: str) -> dict[str, str]:
    return {"resource": "PullRequest", "code": "custom", "message": message}


def _check_new_pull(
    request: web.Request, repo: Repo, heads: dict[str, str], head: str, base: str
) -> None:
    """Refuse like GitHub: unknown branches, nothing to merge, or an open PR already."""
    for field, ref in (("head", head), ("base", base)):
        if ref not in heads:
            invalid("PullRequest", field)
    if heads[head] == heads[base]:
        fail(
            422,
            "Validation Failed",
            errors=[_custom_error(f"No commits between {base} and {head}")],
        )
    for other in context_of(request).state.pulls.values():
        same = other.issue.repo is repo and (other.head, other.base) == (head, base)
        if same and other.issue.state == "open":
            message = f"A pull request already exists for {repo.owner.login}:{head}."
            fail(422, "Validation Failed", errors=[_custom_error(message)])


@routes.post("/repos/{owner}/{repo}/pulls")
async def create_pull(request: web.Request) -> web.Response:
    """Open a PR from a pushed branch; 422 like GitHub when it cannot."""
    repo, token = repo_of(request)
    body = await read_json(request)
    if "title" not in body:
        invalid("PullRequest", "title", "missing_field")
    head, base = _branch_name(repo, str(body["head"])), str(body["base"])
    heads = await branch_heads(repo.path)
    _check_new_pull(request, repo, heads, head, base)
    state = context_of(request).state
    fields = PullFields(
        title=str(body["title"]),
        head=head,
        base=base,
        body=body.get("body"),
        draft=bool(body.get("draft", False)),
        maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
    )
    pull = state.add_pull(repo, fields, token.installation.app.bot)
    after = state.take_after_create_pull()
    if after is not None:
        await asyncio.sleep(after.delay)
        if after.status is not None:
            fail(after.status, "Server Error")
    return json_response(_render_pull(request, pull, heads), status=201)


@routes.get("/repos/{owner}/{repo}/pulls")
async def list_pulls(request: web.Request) -> web.Response:
    """PRs filtered by state, head (`owner:branch`) and base, newest first."""
    repo, _ = repo_of(request)
    wanted = request.query.get("state", "open")
    head = request.query.get("head")
    base = request.query.get("base")
    heads = await branch_heads(repo.path)
    found = []
    for pull in context_of(request).state.pulls.values():
        if pull.issue.repo is not repo:
            continue
        if wanted != "all" and pull.issue.state != wanted:
            continue
        if head is not None and not _head_matches(head, pull):
            continue
        if base is not None and base != pull.base:
            continue
        found.append(_render_pull(request, pull, heads))
    found.sort(key=lambda p: -int(p["number"]))
    return paginate(request, found)


@dataclass
class ReviewReply(Comment):
    """A review comment posted as a reply: it belongs to the thread of `in_reply_to`."""

    in_reply_to: int = 0


def _review_comment_of(request: web.Request, repo: Repo) -> Comment:
    comment = context_of(request).state.comments.get(int_param(request, "comment_id"))
    if comment is None or comment.repo is not repo or comment.kind != "review":
        fail(404, "Not Found")
    return comment


def _render_review_comment(request: web.Request, comment: Comment) -> render.JSON:
    ctx = context_of(request)
    reactions = [r for r in ctx.state.reactions if r.comment_id == comment.id]
    body = render.comment(comment, ctx.urls, reactions)
    body["pull_request_url"] = f"{ctx.urls.repo_api(comment.repo)}/pulls/{comment.number}"
    if isinstance(comment, ReviewReply):
        body["in_reply_to_id"] = comment.in_reply_to
    return body


@routes.post("/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies")
async def reply_to_review_comment(request: web.Request) -> web.Response:
    """A reply in a review comment's thread (a reply to a reply joins the same thread)."""
    repo, token = repo_of(request)
    pull = _pull_of(request, repo)
    target = _review_comment_of(request, repo)
    if target.number != pull.issue.number:
        fail(404, "Not Found")
    body = await read_json(request)
    state = context_of(request).state
    root = target.in_reply_to if isinstance(target, ReviewReply) else target.id
    now = state.clock()
    author = token.installation.app.bot
    reply = ReviewReply(
        state.next_id(), repo, target.number, str(body["body"]), author, now, now, "review", root
    )
    state.comments[reply.id] = reply
    return json_response(_render_review_comment(request, reply), status=201)


@routes.patch("/repos/{owner}/{repo}/pulls/comments/{comment_id}")
async def update_review_comment(request: web.Request) -> web.Response:
    """Edit a review comment; an App may only edit its own."""
    repo, token = repo_of(request)
    comment = _review_comment_of(request, repo)
    if comment.user is not token.installation.app.bot:
        fail(403, NOT_INTEGRATION)
    comment.body = str((await read_json(request))["body"])
    comment.updated_at = context_of(request).state.clock()
    return json_response(_render_review_comment(request, comment))


def _pull_of(request: web.Request, repo: Repo) -> Pull:
    pull = context_of(request).state.pull(repo, int_param(request, "pull_number"))
    if pull is None:
        fail(404, "Not Found")
    return pull


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}")
async def get_pull(request: web.Request) -> web.Response:
    """One PR with its current head SHA."""
    repo, _ = repo_of(request)
    pull = _pull_of(request, repo)
    return json_response(_render_pull(request, pull, await branch_heads(repo.path)))


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/files")
async def list_pull_files(request: web.Request) -> web.Response:
    """The files a PR changes against the merge base of its base branch, paginated."""
    repo, _ = repo_of(request)
    pull = _pull_of(request, repo)
    heads = await branch_heads(repo.path)
    head_sha, base_sha = heads.get(pull.head), heads.get(pull.base)
    if head_sha is None or base_sha is None:
        return paginate(request, [])
    urls = context_of(request).urls
    entries = await diff_files(repo.path, base_sha, head_sha)
    found = []
    for entry in entries:
        paths = tuple(dict.fromkeys((entry.old_path, entry.path)))
        patch = await file_patch(repo.path, base_sha, head_sha, paths)
        found.append(render.diff_entry(repo, urls, entry, head_sha, patch))
    return paginate(request, found)


@routes.patch("/repos/{owner}/{repo}/pulls/{pull_number}")
async def update_pull(request: web.Request) -> web.Response:
    """Edit title, body, base or state."""
    repo, _ = repo_of(request)
    pull = _pull_of(request, repo)
    body = await read_json(request)
    heads = await branch_heads(repo.path)
    if "base" in body and body["base"] not in heads:
        invalid("PullRequest", "base")
    for key in PULL_EDITABLE:
        if key in body:
            target: Any = pull.issue if key in ("title", "body") else pull
            setattr(target, key, body[key])
    if "state" in body:
        pull.issue.state = str(body["state"])
    pull.issue.updated_at = context_of(request).state.clock()
    return json_response(_render_pull(request, pull, heads))


def _apply_check_fields(run: CheckRun, body: dict[str, Any], now: str) -> None:
    """Set check run fields; a conclusion completes the run (GitHub does the same)."""
    for key in CHECK_RUN_FIELDS:
        if key in body:
            setattr(run, key, body[key])
    if "output" in body:
        # GitHub replaces title, summary and text, and appends the annotations.
        output = dict(body["output"])
        run.annotations += [dict(a) for a in output.pop("annotations", None) or []]
        run.output = output
    if "status" in body:
        run.status = str(body["status"])
    if body.get("conclusion") is not None:
        run.conclusion = str(body["conclusion"])
        run.status = "completed"
    if run.status == "completed" and run.conclusion is None:
        invalid("CheckRun", "conclusion", "missing_field")
    if run.status == "completed" and run.completed_at is None:
        run.completed_at = now
    if run.status == "in_progress" and run.started_at is None:
        run.started_at = now


@routes.post("/repos/{owner}/{repo}/check-runs")
async def create_check_run(request: web.Request) -> web.Response:
    """Create a check run on an existing commit."""
    repo, token = repo_of(request)
    body = await read_json(request)
    state = context_of(request).state
    head_sha = await resolve_commit(repo.path, str(body["head_sha"]))
    if head_sha is None or head_sha != body["head_sha"]:
        invalid("CheckRun", "head_sha")
    run = CheckRun(state.next_id(), repo, token.installation.app, str(body["name"]), head_sha)
    _apply_check_fields(run, body, render.timestamp(state.clock()))
    state.check_runs[run.id] = run
    return json_response(render.check_run(run, context_of(request).urls), status=201)


def _check_run_of(request: web.Request, repo: Repo) -> CheckRun:
    run = context_of(request).state.check_runs.get(int_param(request, "check_run_id"))
    if run is None or run.repo is not repo:
        fail(404, "Not Found")
    return run


@routes.get("/repos/{owner}/{repo}/check-runs/{check_run_id}")
async def get_check_run(request: web.Request) -> web.Response:
    """One check run."""
    repo, _ = repo_of(request)
    return json_response(render.check_run(_check_run_of(request, repo), context_of(request).urls))


@routes.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}")
async def update_check_run(request: web.Request) -> web.Response:
    """Update status, conclusion or output of a check run."""
    repo, _ = repo_of(request)
    run = _check_run_of(request, repo)
    body = await read_json(request)
    _apply_check_fields(run, body, render.timestamp(context_of(request).state.clock()))
    return json_response(render.check_run(run, context_of(request).urls))


@routes.get("/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
async def list_annotations(request: web.Request) -> web.Response:
    """A check run's annotations, in the order they were added."""
    repo, _ = repo_of(request)
    run = _check_run_of(request, repo)
    urls = context_of(request).urls
    return paginate(request, [render.annotation(run, urls, a) for a in run.annotations])


@routes.get("/repos/{owner}/{repo}/commits/{ref}/check-runs")
async def list_check_runs(request: web.Request) -> web.Response:
    """Check runs for a commit (a ref is resolved first)."""
    repo, _ = repo_of(request)
    sha = await resolve_commit(repo.path, request.match_info["ref"])
    if sha is None:
        fail(422, f"No commit found for SHA: {request.match_info['ref']}")
    urls = context_of(request).urls
    runs = [
        render.check_run(r, urls)
        for r in context_of(request).state.check_runs.values()
        if r.repo is repo and r.head_sha == sha
    ]
    return json_response({"total_count": len(runs), "check_runs": runs})
