"""`gantry app create`: register the GitHub App through GitHub's manifest flow, keep its keys.

The command checks its inputs and what exists before anything is registered, serves the local
page (`gantry.app_page`) until GitHub's redirect is handled, then says what was written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

from config.errors import SettingsError
from config.settings import Settings, load_settings
from gantry import app_manifest as core
from gantry.app_manifest import Conversion, ManifestError
from gantry.app_page import Plan, run_flow

# Shipped inside the package (package data): an installed Gantry, the service image too,
# has it without a source tree.
DEFAULT_MANIFEST = Path(__file__).resolve().parent / "app.yml"
DEFAULT_KEY_NAME = "github-app.pem"


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
    core.check_public_url(public_url)
    try:
        base = core.parse_manifest(args.manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(
            f"cannot read the manifest {args.manifest} ({exc.strerror or exc}): pass "
            "--manifest with an App manifest (Gantry's own is gantry/app.yml)"
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
    port = urlsplit(url).port
    print(f"(On a remote host, forward the port first: ssh -L {port}:127.0.0.1:{port} HOST.)")


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
