"""GitHub's App manifest flow: the new-App web pages and the code exchange.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
A form posts `manifest` (JSON) to `/settings/apps/new?state=…` (or the organization's page);
the person presses "Create GitHub App"; GitHub redirects to the manifest's `redirect_url` with
`?code=…&state=…`; `POST /app-manifests/{code}/conversions` (REST, no authentication) trades
the code, once and within the hour, for the App's id, private key and webhook secret.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from forge import render
from forge.context import Context, context_of
from forge.rest import fail, json_response
from forge.state import MANIFEST_CODE_TTL_SECONDS, App, ManifestCode, PendingManifest

web_routes = web.RouteTableDef()
api_routes = web.RouteTableDef()

PERMISSIONS_SCHEMA = "#/components/schemas/app-permissions"
CREATE_PATH = "/settings/apps/manifest/{token}"
SLUG_RE = re.compile(r"[^a-z0-9]+")
MAX_NAME = 34  # GitHub's limit on an App's name
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · GitHub</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


class ManifestRefused(ValueError):
    """A manifest GitHub's page would not take, with GitHub's reason."""


def page(title: str, body: str, status: int = 200) -> web.Response:
    """An HTML page; `body` is already escaped."""
    text = PAGE.format(title=html.escape(title), body=body)
    return web.Response(text=text, status=status, content_type="text/html")


def slugify(name: str) -> str:
    """GitHub's slug of an App name: lower case, runs of other characters become `-`."""
    return SLUG_RE.sub("-", name.lower()).strip("-")


def check_manifest(ctx: Context, raw: str | None) -> dict[str, Any]:
    """The manifest as GitHub's page reads it, or the reason it refuses it."""
    if not raw:
        raise ManifestRefused("The manifest parameter is missing")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ManifestRefused("The manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise ManifestRefused("The manifest must be a JSON object")
    if not isinstance(manifest.get("url"), str) or not manifest["url"]:
        raise ManifestRefused("url is required")
    hook = manifest.get("hook_attributes") or {}
    if not isinstance(hook, dict) or (hook.get("active", True) and not hook.get("url")):
        raise ManifestRefused("hook_attributes.url is required for an active webhook")
    permissions = manifest.get("default_permissions") or {}
    known = ctx.spec.schema(PERMISSIONS_SCHEMA).get("properties", {})
    unknown = sorted(set(permissions) - set(known)) if isinstance(permissions, dict) else []
    if unknown or list(ctx.spec.validator(PERMISSIONS_SCHEMA).iter_errors(permissions)):
        raise ManifestRefused(f"default_permissions are not valid ({', '.join(unknown)})")
    return manifest


@web_routes.post("/settings/apps/new")
@web_routes.post("/organizations/{org}/settings/apps/new")
async def new_app(request: web.Request) -> web.Response:
    """The page a manifest is posted to: shows what will be registered, and the button."""
    ctx = context_of(request)
    form = await request.post()
    raw = form.get("manifest")
    try:
        manifest = check_manifest(ctx, raw if isinstance(raw, str) else None)
    except ManifestRefused as exc:
        return page("Invalid GitHub App manifest", f"<p>{html.escape(str(exc))}</p>", 422)
    org = request.match_info.get("org")
    if org is not None:
        ctx.state.user(org, "Organization")
    token = secrets.token_urlsafe(16)
    ctx.state.pending_manifests[token] = PendingManifest(
        manifest=manifest,
        owner=org or ctx.state.web_user,
        state=request.query.get("state"),
        expires_at=ctx.state.clock() + MANIFEST_CODE_TTL_SECONDS,
    )
    return confirm_page(ctx.state.pending_manifests[token], token, str(manifest.get("name", "")))


def confirm_page(
    pending: PendingManifest, token: str, name: str, error: str = "", status: int = 200
) -> web.Response:
    """ "Create GitHub App for OWNER": the name (editable), what it asks for, the button."""
    manifest = pending.manifest
    permissions = manifest.get("default_permissions") or {}
    events = manifest.get("default_events") or []
    items = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
        for k, v in (permissions.items() if isinstance(permissions, dict) else [])
    )
    hook = manifest.get("hook_attributes") or {}
    body = (
        (f'<p class="error" id="error">{html.escape(error)}</p>' if error else "")
        + f'<form method="post" action="{CREATE_PATH.format(token=token)}">'
        f'<label>GitHub App name <input name="name" id="name" value="{html.escape(name)}">'
        f"</label><p>Webhook URL: <code>{html.escape(str(hook.get('url', '')))}</code></p>"
        f"<ul>{items}</ul><p>Events: {html.escape(', '.join(map(str, events)))}</p>"
        '<button type="submit" id="submit">Create GitHub App</button></form>'
    )
    return page(f"Create GitHub App for {pending.owner}", body, status)


@web_routes.post(CREATE_PATH)
async def create_app(request: web.Request) -> web.Response:
    """The button: register the App and send the browser back with a one-time code."""
    ctx = context_of(request)
    token = request.match_info["token"]
    pending = ctx.state.pending_manifests.get(token)
    if pending is None or pending.expires_at <= ctx.state.clock():
        return page("Expired", "<p>This page has expired; post the manifest again.</p>", 404)
    name = str((await request.post()).get("name", "")).strip()
    problem = name_problem(ctx, name)
    if problem:
        return confirm_page(pending, token, name, problem, 422)
    del ctx.state.pending_manifests[token]
    app = register(ctx, pending, name)
    code = secrets.token_hex(10)
    expires_at = ctx.state.clock() + MANIFEST_CODE_TTL_SECONDS
    ctx.state.manifest_codes[code] = ManifestCode(app, expires_at)
    redirect = pending.manifest.get("redirect_url")
    if not isinstance(redirect, str) or not redirect:
        return page("GitHub App created", f"<p>Code: <code>{code}</code></p>")
    state = {"state": pending.state} if pending.state is not None else {}
    raise web.HTTPFound(with_query(redirect, {"code": code, **state}))


def name_problem(ctx: Context, name: str) -> str:
    """Why GitHub would not take this name, or ''."""
    if not name or not slugify(name):
        return "Name can't be blank"
    if len(name) > MAX_NAME:
        return f"Name is too long (maximum is {MAX_NAME} characters)"
    if ctx.state.app_named(name) or ctx.state.app_named(slugify(name)):
        return "Name is already in use"
    return ""


def register(ctx: Context, pending: PendingManifest, name: str) -> App:
    """The App the manifest describes, with a fresh key and generated secrets."""
    manifest = pending.manifest
    app = ctx.state.add_app(slugify(name), pending.owner, name)
    permissions = manifest.get("default_permissions") or {}
    hook = manifest.get("hook_attributes") or {}
    app.permissions = {str(k): str(v) for k, v in permissions.items()}
    app.events = tuple(str(e) for e in manifest.get("default_events") or [])
    app.description = str(manifest.get("description") or "")
    app.hook_url = str(hook.get("url")) if isinstance(hook, dict) and hook.get("url") else None
    app.webhook_secret = secrets.token_hex(20) if app.hook_url else None
    app.client_secret = secrets.token_hex(20)
    return app


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to whatever query it already has."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(query=query))


@api_routes.post("/app-manifests/{code}/conversions")
async def convert(request: web.Request) -> web.Response:
    """Trade a manifest code for the App's credentials: once, within the hour, no auth."""
    ctx = context_of(request)
    found = ctx.state.manifest_codes.pop(request.match_info["code"], None)
    if found is None or found.expires_at <= ctx.state.clock():
        fail(404, "Not Found")
    return json_response(render.app_from_manifest(found.app, ctx.urls), status=201)
