"""App endpoints: `GET /app`, installation tokens, and a repository's installation."""

from __future__ import annotations

import asyncio

from aiohttp import web

from forge import render
from forge.context import context_of
from forge.hook_log import HookLog
from forge.rest import app_from_jwt, fail, int_param, json_response
from forge.sender import Delivery

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


@routes.get("/app/hook/deliveries")
async def list_hook_deliveries(request: web.Request) -> web.Response:
    """The App's webhook deliveries, newest first, paginated with `cursor`."""
    app = app_from_jwt(request)
    ctx = context_of(request)
    per_page = min(int(request.query.get("per_page", "30")), 100)
    items, after = ctx.hook_log(app.id).page(request.query.get("cursor"), per_page)
    headers = {}
    if after is not None:
        url = request.url.update_query(per_page=per_page, cursor=after)
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response([item.render() for item in items], headers=headers)


@routes.post("/app/hook/deliveries/{delivery_id}/attempts")
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivery again, after answering 202 (as GitHub does)."""
    app = app_from_jwt(request)
    ctx = context_of(request)
    log = ctx.hook_log(app.id)
    entry = log.get(int_param(request, "delivery_id"))
    if entry is None:
        fail(404, "Not Found")
    when = ctx.state.clock()
    task = asyncio.get_running_loop().create_task(resend(log, entry.url, entry.delivery, when))
    ctx.sending.add(task)
    task.add_done_callback(ctx.sending.discard)
    return json_response({}, status=202)


async def resend(log: HookLog, url: str, delivery: Delivery, when: float) -> None:
    """The redelivery itself: same id, same body, recorded as a redelivery."""
    await log.send(url, delivery, redelivery=True, when=when)


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
