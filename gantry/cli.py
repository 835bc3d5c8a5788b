"""The `gantry` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from config.errors import SettingsError
from config.settings import Settings, load_settings
from gantry import app_create, compose, doctor, local_run, validate
from gantry.compose import create_app

DESCRIPTION = "Gantry: a GitHub App that gives coding agents a Docker environment."
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# Why a server cannot listen: said in one line, not a traceback.
LISTEN_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def package_version() -> str:
    try:
        return version("gantry-bot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gantry", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gantry {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="receive GitHub webhooks and queue the tasks they ask for",
        description="Serve POST /webhook, GET /healthz and GET /readyz.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="intake and task pages only: `gantry worker` processes run the tasks",
    )
    commands.add_parser(
        "worker",
        help="run queued tasks only (scale-out), with its own GANTRY_DATA_DIR",
        description="Claim and run tasks from the shared store; drain on SIGTERM.",
    )
    commands.add_parser(
        "doctor",
        help="check Docker, GitHub credentials, data dir and database, and say how to fix them",
        description="Check what Gantry needs; exit 1 if anything is wrong.",
    )
    local_run.add_parser(commands)
    validate.add_parser(commands)
    app_create.add_parser(commands)
    return parser


def settings_or_error() -> Settings | SettingsError:
    try:
        return load_settings()
    except SettingsError as exc:
        return exc


def cmd_doctor() -> int:
    results = asyncio.run(doctor.run_checks(settings_or_error()))
    print(doctor.render(results))
    return 1 if any(r.failed for r in results) else 0


def cmd_serve(host: str, port: int, workers: bool) -> int:
    try:
        settings = load_settings()
        if settings.serving_problems():
            raise SettingsError(settings.serving_problems())
    except SettingsError as exc:
        print("gantry serve: the settings are not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=compose.LOG_FORMAT)
    try:
        app = create_app(settings, workers=workers)
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    except SettingsError as exc:
        print(f"gantry serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in LISTEN_ERRORS:
            raise
        print(f"gantry serve: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        return cmd_doctor()
    if args.command == "config":
        settings = settings_or_error()
        chosen = settings if isinstance(settings, Settings) else None
        return validate.run(args.path, chosen, org_file=args.org_config)
    if args.command == "run":
        try:
            return local_run.main(load_settings(), args)
        except SettingsError as exc:
            print("gantry run: " + "; ".join(exc.problems), file=sys.stderr)
            return 2
    if args.command == "worker":
        return compose.worker_command()
    if args.command == "app":
        return app_create.main(settings_or_error(), args)
    if args.command == "serve":
        return cmd_serve(args.host, args.port, not args.no_workers)
    print(f"gantry: unknown command {args.command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
