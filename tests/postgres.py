"""A PostgreSQL server for tests: the one CI started (TEST_POSTGRES_URL), or a throwaway cluster
made with initdb and pg_ctl from Debian's postgresql package, run as its `postgres` user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

# Set by .ci/run after it starts the packaged cluster: postgresql://user:password@host:port/db
SERVER_ENV = "TEST_POSTGRES_URL"
SERVICE_USER = "postgres"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be found or started here."""


def binaries() -> Path:
    """The directory of initdb and pg_ctl (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresUnavailableError("initdb is missing (apt-get install postgresql)")
    return Path(initdb).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_service_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the package's user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVICE_USER, "--", *command]


def run(*args: object) -> None:
    done = subprocess.run(
        as_service_user([str(a) for a in args]), capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise PostgresUnavailableError(f"{args[0]} failed: {done.stderr.strip()[-500:]}")


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """initdb + pg_ctl start on a free local port (trust auth); stopped and removed on exit.

    Its directory is right under /tmp: the service user must reach it (pytest's are 0700)."""
    bindir = binaries()
    root = Path(tempfile.mkdtemp(prefix="gantry-pg-"))
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVICE_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    run(bindir / "initdb", "-D", data, "--auth=trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The admin URL of a running server: CI's, or a throwaway one."""
    given = os.environ.get(SERVER_ENV)
    if given:
        yield given
        return
    try:
        with throwaway_cluster() as url:
            yield url
    except (OSError, KeyError) as exc:
        raise PostgresUnavailableError(f"cannot start a PostgreSQL cluster: {exc}") from exc


def with_database(admin_url: str, name: str) -> str:
    """`admin_url` pointing at database `name` instead."""
    base, _, query = admin_url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped after."""
    name = f"gantry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def restart_database(url: str) -> int:
    """What a server restart does to one database's clients, without restarting the (shared)
    server: every other connection to it is terminated. How many were."""
    sql = (
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid()"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0
