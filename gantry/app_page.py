"""The local page of `gantry app create` and GitHub's way back to it.

It listens on 127.0.0.1 only. Its button posts the manifest to GitHub's new-App page; GitHub
sends the browser back with a one-time code, which is traded (once, within the hour) for the
App's id, private key and webhook secret, then stored where `gantry serve` reads them.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import gidgethub
from aiohttp import web
from gidgethub.aiohttp import GitHubAPI

from gantry import app_manifest as core
from gantry.app_credentials import store_credentials
from gantry.app_manifest import Conversion, ManifestError

LOCAL_HOST = "127.0.0.1"
CALLBACK_PATH = "/callback"
USER_AGENT = "gantry-app-create"
# GitHub: "You must complete all three steps of the GitHub App Manifest flow within one hour."
FLOW_TIMEOUT_S = 3600.0
EXCHANGE_TIMEOUT_S = 30
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


@dataclass(frozen=True)
class Plan:
    """Everything one run of the flow needs, decided before a page is served."""

    manifest: dict[str, Any]
    web_url: str
    api_url: str
    org: str | None
    public_url: str
    env_file: Path
    key_file: Path
    port: int = 0
    force: bool = False
    write_public_url: bool = False


@dataclass
class Flow:
    """One run's secrets and how it ended.

    `token` is in the address printed to the terminal only, so another user of this host
    cannot open the page; `cookie` ties the redirect to the browser that opened it; `state`
    is the CSRF value GitHub hands back unchanged.
    """

    plan: Plan
    state: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    cookie: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    done: asyncio.Future[Conversion] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    redirect_url: str = ""


FLOW_KEY = web.AppKey("flow", Flow)
COOKIE = "gantry_app_create"


async def run_flow(
    plan: Plan, *, on_ready: Callable[[str], None], wait_s: float = FLOW_TIMEOUT_S
) -> Conversion:
    """Serve the local page until GitHub's redirect brings a code that was exchanged."""
    flow = Flow(plan)
    runner = web.AppRunner(local_app(flow), access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server((LOCAL_HOST, plan.port))
        await web.SockSite(runner, sock).start()
        base = f"http://{LOCAL_HOST}:{sock.getsockname()[1]}"
        flow.redirect_url = base + CALLBACK_PATH
        on_ready(f"{base}/?{urlencode({'token': flow.token})}")
        return await asyncio.wait_for(asyncio.shield(flow.done), wait_s)
    finally:
        await runner.cleanup()


def local_app(flow: Flow) -> web.Application:
    """The page with the button, and the way back from GitHub."""
    app = web.Application()
    app[FLOW_KEY] = flow
    app.router.add_get("/", start_page)
    app.router.add_get(CALLBACK_PATH, callback)
    return app


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A small HTML page; callers escape what they put in `body`."""
    text = PAGE.format(title=html.escape(title), body=body)
    return web.Response(text=text, status=status, content_type="text/html")


async def start_page(request: web.Request) -> web.Response:
    """The form that posts the manifest to GitHub (GitHub wants a form post, not an API call)."""
    flow = request.app[FLOW_KEY]
    if not same(request.query.get("token", ""), flow.token):
        return page("Refused", "<p>Open the address printed in the terminal.</p>", 403)
    plan = flow.plan
    manifest = core.build_manifest(
        plan.manifest, public_url=plan.public_url, redirect_url=flow.redirect_url
    )
    action = core.new_app_url(plan.web_url, plan.org, flow.state)
    owner = f"the organization {plan.org}" if plan.org else "your account"
    body = (
        f"<p>Register <strong>{html.escape(str(manifest['name']))}</strong> for "
        f"{html.escape(owner)} on {html.escape(plan.web_url)}. Webhooks will go to "
        f"<code>{html.escape(manifest['hook_attributes']['url'])}</code>.</p>"
        f'<form action="{html.escape(action)}" method="post">'
        f'<input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">'
        '<button type="submit" id="create">Create the GitHub App</button></form>'
    )
    response = page("Register Gantry's GitHub App", body)
    # Lax: sent on GitHub's top-level redirect back here, not on requests other sites make.
    response.set_cookie(COOKIE, flow.cookie, httponly=True, samesite="Lax", path="/")
    return response


def same(given: str, expected: str) -> bool:
    """Compare a secret in constant time."""
    return secrets.compare_digest(given.encode(), expected.encode())


async def callback(request: web.Request) -> web.Response:
    """GitHub's redirect: check `state`, exchange the code, write the credentials."""
    flow = request.app[FLOW_KEY]
    if flow.done.done():
        return page("Already done", "<p>This run has finished; start a new one.</p>", 409)
    state = request.query.get("state", "")
    code = request.query.get("code", "")
    if not (same(state, flow.state) and same(request.cookies.get(COOKIE, ""), flow.cookie)):
        # Not the redirect of the form this run served to this browser: refuse the code.
        return page("Refused", "<p>This redirect is not from this run; nothing was done.</p>", 403)
    if not code:
        return page("No code", "<p>GitHub sent no code back.</p>", 400)
    try:
        conversion = await exchange_code(flow.plan.api_url, code)
    except (ManifestError, gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
        return failed(flow, f"GitHub did not trade the code for the App's credentials: {exc}")
    try:
        write_credentials(flow.plan, conversion)
    except (ManifestError, OSError) as exc:
        return failed(
            flow,
            f"the App {conversion.slug} exists on GitHub but its credentials could not be "
            f"written ({exc}): fix that, then delete the App at {conversion.html_url} and run "
            "this again",
        )
    flow.done.set_result(conversion)
    return page("GitHub App created", success_body(conversion, flow.plan))


def failed(flow: Flow, reason: str) -> web.Response:
    """End the run with `reason`, in the browser and on the command line."""
    flow.done.set_exception(ManifestError(reason))
    return page("Failed", f'<p id="failed">{html.escape(reason)}</p>', 502)


def success_body(conversion: Conversion, plan: Plan) -> str:
    """What the browser shows at the end: where things were written, what to do next."""
    install = f"{conversion.html_url}/installations/new"
    return (
        f'<p id="created">Created <strong>{html.escape(conversion.name)}</strong> '
        f"(App id {conversion.app_id}). Its private key is in "
        f"<code>{html.escape(str(plan.key_file))}</code>, its id and webhook secret in "
        f"<code>{html.escape(str(plan.env_file))}</code>.</p>"
        f'<p>Next: <a href="{html.escape(install)}">install the App</a> on your repositories, '
        "then run <code>gantry doctor</code> and <code>gantry serve</code>.</p>"
    )


async def exchange_code(api_url: str, code: str) -> Conversion:
    """`POST /app-manifests/{code}/conversions`: unauthenticated, the code is the credential."""
    timeout = aiohttp.ClientTimeout(total=EXCHANGE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        gh = GitHubAPI(session, USER_AGENT, base_url=api_url)
        data = await gh.post("/app-manifests/{code}/conversions", {"code": code}, data=b"")
    return core.parse_conversion(data)


def write_credentials(plan: Plan, conversion: Conversion) -> None:
    """Store what GitHub returned where `gantry serve` reads it."""
    public_url = plan.public_url if plan.write_public_url else None
    store_credentials(conversion, plan.key_file, plan.env_file, public_url, replace=plan.force)
