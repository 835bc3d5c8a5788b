"""Repository, contents and branches, read from the bare git repo on every request."""

from __future__ import annotations

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.git_repo import (
    branch_heads,
    commit_info,
    list_tree,
    read_blob,
    resolve_commit,
    resolve_tree,
    tree_entries,
)
from forge.rest import fail, json_response, paginate, repo_of

routes = web.RouteTableDef()


@routes.get("/repos/{owner}/{repo}")
async def get_repository(request: web.Request) -> web.Response:
    """The repository object."""
    repo, _ = repo_of(request)
    return json_response(render.repository(repo, context_of(request).urls))


@routes.get("/repos/{owner}/{repo}/contents/{path:.+}")
async def get_contents(request: web.Request) -> web.Response:
    """A file (base64) or a directory listing at `ref` (default: the default branch)."""
    repo, _ = repo_of(request)
    urls = context_of(request).urls
    ref = request.query.get("ref") or repo.default_branch
    commit = await resolve_commit(repo.path, ref)
    if commit is None:
        fail(404, f"No commit found for the ref {ref}")
    path = request.match_info["path"].strip("/")
    found = [e for e in await tree_entries(repo.path, commit, path) if e.path == path]
    if not found:
        fail(404, "Not Found")
    entry = found[0]
    if entry.type == "tree":
        children = await tree_entries(repo.path, commit, path + "/")
        return json_response([render.content_entry(repo, urls, c, ref) for c in children])
    data = await read_blob(repo.path, entry.sha) if entry.type == "blob" else b""
    return json_response(render.content_file(repo, urls, entry, ref, data))


@routes.get("/repos/{owner}/{repo}/branches")
async def list_branches(request: web.Request) -> web.Response:
    """Branches, sorted by name."""
    repo, _ = repo_of(request)
    urls = context_of(request).urls
    heads = await branch_heads(repo.path)
    items = [render.branch_summary(repo, urls, n, heads[n]) for n in sorted(heads)]
    return paginate(request, items)


@routes.get("/repos/{owner}/{repo}/branches/{branch:.+}")
async def get_branch(request: web.Request) -> web.Response:
    """One branch with its head commit."""
    repo, _ = repo_of(request)
    name = request.match_info["branch"]
    sha = (await branch_heads(repo.path)).get(name)
    if sha is None:
        fail(404, "Branch not found")
    info = await commit_info(repo.path, sha)
    return json_response(render.branch(repo, context_of(request).urls, name, info))


@routes.get("/repos/{owner}/{repo}/git/trees/{tree_sha:.+}")
async def get_tree(request: web.Request) -> web.Response:
    """A tree by SHA or ref; `recursive` (any value) lists everything below it."""
    repo, _ = repo_of(request)
    sha = await resolve_tree(repo.path, request.match_info["tree_sha"])
    if sha is None:
        fail(404, "Not Found")
    recursive = "recursive" in request.query
    entries = await list_tree(repo.path, sha, recursive=recursive)
    return json_response(render.tree(repo, context_of(request).urls, sha, entries))
