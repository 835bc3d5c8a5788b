"""App endpoints: `GET /app`, installation tokens, and a repository's installation."""

from __future__ import annotations

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.rest import app_from_jwt, fail, int_param, json_response

routes = web.RouteTableDef()


@routes.get("/app")
async def get_app(request: web.Request) -> web.Response:
    """The authenticated App."""
    app = app_from_jwt(request)
    return json_response(render.app(app, context_of(request).urls))


@routes.post("/app/installations/{installation_id}/access_tokens")
async def create_token(request: web.Request) -> web.Response:
    """Mint an installation token for one of the App's installations."""
    app = app_from_jwt(request)
    state = context_of(request).state
    installation = state.installations.get(int_param(request, "installation_id"))
    if installation is None or installation.app is not app:
        fail(404, "Not Found")
    token = state.mint_token(installation)
    return json_response(render.access_token(token.value, token.expires_at), status=201)


@routes.get("/repos/{owner}/{repo}/installation")
async def get_repo_installation(request: web.Request) -> web.Response:
    """The App's installation covering a repository."""
    app = app_from_jwt(request)
    ctx = context_of(request)
    repo = ctx.state.repo(request.match_info["owner"], request.match_info["repo"])
    installation = ctx.state.installation_for(repo, app) if repo is not None else None
    if installation is None:
        fail(404, "Not Found")
    return json_response(render.installation(installation, ctx.urls))


@routes.get("/users/{username}")
async def get_user(request: web.Request) -> web.Response:
    """A user by login (Apps look up their own `slug[bot]` user for commit attribution)."""
    state = context_of(request).state
    account = state.users.get(request.match_info["username"].lower())
    if account is None:
        fail(404, "Not Found")
    return json_response(render.user(account, context_of(request).urls))
