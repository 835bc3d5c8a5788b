"""The `gantry` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from config.errors import SettingsError
from config.settings import Settings, load_settings
from gantry import doctor

DESCRIPTION = "Gantry: a GitHub App that gives coding agents a Docker environment."


def package_version() -> str:
    try:
        return version("gantry-bot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gantry", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gantry {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "doctor",
        help="check Docker, GitHub credentials, data dir and database, and say how to fix them",
        description="Check what Gantry needs; exit 1 if anything is wrong.",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        return cmd_doctor()
    print(f"gantry: unknown command {args.command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
