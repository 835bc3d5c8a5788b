"""`python -m forge`: run the GitHub stand-in standalone (for the demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from forge.server import Forge

DEFAULT_PORT = 8787


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m forge", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", type=Path, default=Path(".forge"))
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="OWNER/NAME[=FOLDER]",
        help="create a repository (from FOLDER's files) with the App installed on it",
    )
    parser.add_argument(
        "--writer",
        action="append",
        default=[],
        metavar="LOGIN",
        help="a user with write permission on every repository created here",
    )
    return parser.parse_args(argv)


def write_private_key(data_dir: Path, pem: str) -> Path:
    """Save the App's key where `GANTRY_GITHUB_PRIVATE_KEY_PATH` can point."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "app-private-key.pem"
    key_path.write_text(pem)
    key_path.chmod(0o600)
    return key_path


async def serve(args: argparse.Namespace) -> None:
    """Start, seed repos, print what a client needs, and serve until interrupted."""
    forge = Forge(args.data_dir.resolve())
    await forge.start(args.host, args.port)
    app = forge.register_app()
    key_path = write_private_key(args.data_dir, app.private_key_pem)
    print(f"web/git:  {forge.base_url}", flush=True)
    print(f"REST API: {forge.api_url}", flush=True)
    print(f"App:      id={app.app_id} slug={app.slug} private key={key_path}", flush=True)
    for spec in args.repo:
        full_name, _, folder = spec.partition("=")
        owner, name = full_name.split("/", 1)
        await forge.create_repo(owner, name, Path(folder) if folder else None)
        installation = forge.install(app.app_id, owner, [name])
        for login in args.writer:
            forge.set_permission(owner, name, login, "write")
        print(f"repo:     {forge.git_url(owner, name)} (installation {installation})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await forge.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
