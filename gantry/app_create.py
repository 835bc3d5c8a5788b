"""`gantry app create`: register the GitHub App through GitHub's manifest flow, keep its keys.

A local page (127.0.0.1 only) posts the manifest to GitHub; GitHub sends the browser back with
a one-time code, which is exchanged for the App's id, private key and webhook secret. They are
written where `gantry serve` reads them: the key to a mode-600 file, the rest to `.env`.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import secrets
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import gidgethub
from aiohttp import web
from gidgethub.aiohttp import GitHubAPI

from config.errors import SettingsError
from config.settings import Settings, load_settings
from gantry import app_manifest as core
from gantry.app_credentials import store_credentials
from gantry.app_manifest import Conversion, ManifestError

LOCAL_HOST = "127.0.0.1"
CALLBACK_PATH = "/callback"
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "app.yml"
DEFAULT_KEY_NAME = "github-app.pem"
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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`gantry app create [--org ORG] [--public-url URL] ...`."""
    app = commands.add_parser("app", help="register the GitHub App and store its credentials")
    actions = app.add_subparsers(dest="app_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="register the App through GitHub's manifest flow in a browser",
        description="Serve a local page whose button registers the App from app.yml on GitHub, "
        "then write its id, private key and webhook secret where `gantry serve` reads them.",
    )
    create.add_argument("--org", help="register the App for this organization (default: you)")
    create.add_argument("--public-url", help="this server's address (default GANTRY_PUBLIC_URL)")
    create.add_argument("--name", help="the App's name (default: app.yml's; unique on GitHub)")
    create.add_argument("--port", type=int, default=0, help="local page port (default: free)")
    create.add_argument("--env-file", type=Path, default=Path(".env"), help="default .env")
    create.add_argument("--key-file", type=Path, help=f"default DATA_DIR/{DEFAULT_KEY_NAME}")
    create.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="default app.yml")
    create.add_argument("--force", action="store_true", help="replace an existing App's key")


def main(settings: Settings | SettingsError, args: argparse.Namespace) -> int:
    """Run the flow from the command line; 0 when the credentials are written."""
    try:
        plan = plan_from(settings, args)
        conversion = asyncio.run(run_flow(plan, on_ready=announce))
    except (ManifestError, SettingsError, OSError, TimeoutError) as exc:
        print(f"gantry app create: {describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gantry app create: stopped; nothing was written", file=sys.stderr)
        return 130
    print(report(plan, conversion))
    return 0


def describe(exc: Exception) -> str:
    """One line for an error, settings problems joined."""
    if isinstance(exc, TimeoutError):
        return "no answer from GitHub within the hour the flow allows; nothing was written"
    return "; ".join(exc.problems) if isinstance(exc, SettingsError) else str(exc)


def plan_from(settings: Settings | SettingsError, args: argparse.Namespace) -> Plan:
    """Check the inputs and what exists before any App is registered on GitHub."""
    if isinstance(settings, SettingsError):
        raise settings
    public_url = args.public_url or (str(settings.public_url) if settings.public_url else "")
    if not public_url:
        raise ManifestError("set GANTRY_PUBLIC_URL or pass --public-url: the App needs a webhook")
    try:
        base = core.parse_manifest(args.manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(
            f"cannot read the manifest {args.manifest} ({exc.strerror or exc}): pass "
            "--manifest with the app.yml of the Gantry repository"
        ) from None
    plan = Plan(
        manifest={**base, **({"name": args.name} if args.name else {})},
        web_url=settings.web_url,
        api_url=settings.api_url,
        org=args.org,
        public_url=public_url,
        env_file=args.env_file.expanduser().absolute(),
        key_file=(args.key_file or settings.data_dir / DEFAULT_KEY_NAME).expanduser().absolute(),
        port=args.port,
        force=args.force,
        write_public_url=bool(args.public_url),
    )
    refusals = existing_credentials(plan, settings)
    if refusals and not plan.force:
        raise ManifestError("; ".join(refusals) + " (pass --force to replace them)")
    return plan


def existing_credentials(plan: Plan, settings: Settings) -> list[str]:
    """Credentials this run would replace: a key file, .env lines, configured settings."""
    found = []
    if plan.key_file.exists():
        found.append(f"{plan.key_file} exists")
    if plan.env_file.is_file():
        names = core.configured_vars(plan.env_file.read_text(encoding="utf-8"))
        if names:
            found.append(f"{plan.env_file} already sets {', '.join(names)}")
    if settings.github_app_id is not None:
        found.append(f"an App is configured already (App id {settings.github_app_id})")
    return found


def announce(url: str) -> None:
    """Tell the operator where the page is."""
    print(f"Open {url} in a browser on this machine and press the button.", flush=True)
    print("(On a remote host, forward the port first: ssh -L PORT:127.0.0.1:PORT host.)")


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
        write_credentials(flow.plan, conversion)
    except (ManifestError, OSError, gidgethub.GitHubException, aiohttp.ClientError) as exc:
        flow.done.set_exception(ManifestError(f"the App was not set up: {exc}"))
        return page("Failed", f"<p>{html.escape(str(exc))}</p>", 502)
    flow.done.set_result(conversion)
    return page("GitHub App created", success_body(conversion, flow.plan))


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


def report(plan: Plan, conversion: Conversion) -> str:
    """The closing lines: what was made and written, and a warning if the environment wins."""
    lines = [
        f"Created the GitHub App {conversion.name!r} (id {conversion.app_id}, slug "
        f"{conversion.slug}) for {conversion.owner or 'you'}.",
        f"Private key: {plan.key_file} (mode 600). Settings: {plan.env_file}.",
        f"Install it on your repositories: {conversion.html_url}/installations/new",
        "Then check with `gantry doctor` and start with `gantry serve`.",
    ]
    try:
        effective = load_settings(plan.env_file).github_app_id
    except SettingsError as exc:
        lines.append(f"warning: the settings do not load now: {describe(exc)}")
        return "\n".join(lines)
    if effective != conversion.app_id:
        lines.append(
            "warning: GANTRY_GITHUB_* variables in the environment override .env; unset them "
            "or `gantry serve` uses another App"
        )
    return "\n".join(lines)
