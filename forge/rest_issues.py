"""Issues, issue comments, reactions and collaborator permissions."""

from __future__ import annotations

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.rest import NOT_INTEGRATION, fail, int_param, json_response, paginate, read_json, repo_of
from forge.state import LEGACY_PERMISSION, Comment, Repo

routes = web.RouteTableDef()


def _comment_of(request: web.Request, repo: Repo, kind: str) -> Comment:
    comment = context_of(request).state.comments.get(int_param(request, "comment_id"))
    if comment is None or comment.repo is not repo or comment.kind != kind:
        fail(404, "Not Found")
    return comment


def _render_comment(request: web.Request, comment: Comment) -> render.JSON:
    ctx = context_of(request)
    reactions = [r for r in ctx.state.reactions if r.comment_id == comment.id]
    return render.comment(comment, ctx.urls, reactions)


@routes.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
async def get_permission(request: web.Request) -> web.Response:
    """A user's permission on the repository (legacy level plus role name)."""
    repo, _ = repo_of(request)
    state = context_of(request).state
    account = state.users.get(request.match_info["username"].lower())
    if account is None:
        fail(404, "Not Found")
    role = state.permission(repo, account.login)
    body = {
        "permission": LEGACY_PERMISSION[role],
        "role_name": role,
        "user": render.user(account, context_of(request).urls),
    }
    return json_response(body)


@routes.get("/repos/{owner}/{repo}/issues/{issue_number}")
async def get_issue(request: web.Request) -> web.Response:
    """An issue, or a pull request's issue half."""
    repo, _ = repo_of(request)
    ctx = context_of(request)
    number = int_param(request, "issue_number")
    issue = ctx.state.issue(repo, number)
    if issue is None:
        fail(404, "Not Found")
    count = sum(1 for c in ctx.state.comments.values() if c.repo is repo and c.number == number)
    is_pull = ctx.state.pull(repo, number) is not None
    return json_response(render.issue(issue, ctx.urls, is_pull=is_pull, comments=count))


@routes.post("/repos/{owner}/{repo}/issues")
async def create_issue(request: web.Request) -> web.Response:
    """Open an issue as the App's bot."""
    repo, token = repo_of(request)
    body = await read_json(request)
    ctx = context_of(request)
    title = body.get("title")
    issue = ctx.state.add_issue(repo, str(title), body.get("body"), token.installation.app.bot)
    return json_response(render.issue(issue, ctx.urls, is_pull=False, comments=0), status=201)


@routes.get("/repos/{owner}/{repo}/issues/{issue_number}/comments")
async def list_comments(request: web.Request) -> web.Response:
    """Comments on an issue or PR conversation, oldest first."""
    repo, _ = repo_of(request)
    number = int_param(request, "issue_number")
    if context_of(request).state.issue(repo, number) is None:
        fail(404, "Not Found")
    comments = [
        _render_comment(request, c)
        for c in context_of(request).state.comments.values()
        if c.repo is repo and c.number == number and c.kind == "issue"
    ]
    return paginate(request, comments)


@routes.post("/repos/{owner}/{repo}/issues/{issue_number}/comments")
async def create_comment(request: web.Request) -> web.Response:
    """Comment on an issue or PR as the App's bot."""
    repo, token = repo_of(request)
    number = int_param(request, "issue_number")
    ctx = context_of(request)
    if ctx.state.issue(repo, number) is None:
        fail(404, "Not Found")
    body = await read_json(request)
    comment = ctx.state.add_comment(repo, number, str(body["body"]), token.installation.app.bot)
    headers = {"Location": render.comment(comment, ctx.urls, [])["url"]}
    return json_response(_render_comment(request, comment), status=201, headers=headers)


@routes.get("/repos/{owner}/{repo}/issues/comments/{comment_id}")
async def get_comment(request: web.Request) -> web.Response:
    """One issue comment."""
    repo, _ = repo_of(request)
    return json_response(_render_comment(request, _comment_of(request, repo, "issue")))


@routes.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
async def update_comment(request: web.Request) -> web.Response:
    """Edit a comment; an App may only edit its own."""
    repo, token = repo_of(request)
    comment = _comment_of(request, repo, "issue")
    if comment.user is not token.installation.app.bot:
        fail(403, NOT_INTEGRATION)
    body = await read_json(request)
    comment.body = str(body["body"])
    comment.updated_at = context_of(request).state.clock()
    return json_response(_render_comment(request, comment))


async def _list_reactions(request: web.Request, kind: str) -> web.Response:
    repo, _ = repo_of(request)
    comment = _comment_of(request, repo, kind)
    ctx = context_of(request)
    wanted = request.query.get("content")
    reactions = [
        render.reaction(r, ctx.urls)
        for r in ctx.state.reactions
        if r.comment_id == comment.id and wanted in (None, r.content)
    ]
    return paginate(request, reactions)


async def _create_reaction(request: web.Request, kind: str) -> web.Response:
    repo, token = repo_of(request)
    comment = _comment_of(request, repo, kind)
    body = await read_json(request)
    ctx = context_of(request)
    content = str(body["content"])
    reaction, created = ctx.state.add_reaction(comment.id, content, token.installation.app.bot)
    return json_response(render.reaction(reaction, ctx.urls), status=201 if created else 200)


@routes.get("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
async def list_issue_comment_reactions(request: web.Request) -> web.Response:
    """Reactions on an issue comment."""
    return await _list_reactions(request, "issue")


@routes.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
async def create_issue_comment_reaction(request: web.Request) -> web.Response:
    """React to an issue comment (201 when new, 200 when it already existed)."""
    return await _create_reaction(request, "issue")


@routes.get("/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
async def list_review_comment_reactions(request: web.Request) -> web.Response:
    """Reactions on a pull request review comment."""
    return await _list_reactions(request, "review")


@routes.post("/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
async def create_review_comment_reaction(request: web.Request) -> web.Response:
    """React to a pull request review comment."""
    return await _create_reaction(request, "review")


@routes.post("/repos/{owner}/{repo}/issues/{issue_number}/reactions")
async def create_issue_reaction(request: web.Request) -> web.Response:
    """React to an issue or pull request itself (Gantry's mark on assigned/labeled issues)."""
    repo, token = repo_of(request)
    ctx = context_of(request)
    issue = ctx.state.issue(repo, int_param(request, "issue_number"))
    if issue is None:
        fail(404, "Not Found")
    content = str((await read_json(request))["content"])
    reaction, created = ctx.state.add_reaction(issue.id, content, token.installation.app.bot)
    return json_response(render.reaction(reaction, ctx.urls), status=201 if created else 200)


@routes.post("/repos/{owner}/{repo}/issues/{issue_number}/labels")
async def add_labels(request: web.Request) -> web.Response:
    """Add labels to an issue or pull request; the answer is every label it now has."""
    repo, _ = repo_of(request)
    ctx = context_of(request)
    issue = ctx.state.issue(repo, int_param(request, "issue_number"))
    if issue is None:
        fail(404, "Not Found")
    body = await read_json(request)
    names = body["labels"] if isinstance(body, dict) else body
    for item in names:
        name = item["name"] if isinstance(item, dict) else str(item)
        if name not in issue.labels:
            issue.labels.append(name)
    return json_response([render.label(n, ctx.urls, repo) for n in issue.labels])
