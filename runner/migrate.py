"""The store's schema, brought to the newest revision with Alembic before a store opens.

Several processes may start at once: on PostgreSQL a transaction-scoped advisory lock lets one
migrate while the others wait; on SQLite an exclusive lock on a file beside the database."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from config.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock's key: any constant that nothing else in the database uses.
ADVISORY_KEY = 0x67616E747279  # "gantry"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of Gantry knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError("no migrations found")
    return revision


def engine(database: Database) -> sa.Engine:
    return sa.create_engine(database.sqlalchemy_url, poolclass=NullPool)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(database: Database) -> None:
    """Bring the schema to `head()`; safe when several processes call it at once."""
    if database.sqlite_path is not None:
        with file_lock(database.sqlite_path.with_name(database.sqlite_path.name + ".migrate")):
            _upgrade(database)
    else:
        _upgrade(database)


def _upgrade(database: Database) -> None:
    with engine(database).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("select pg_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY})
        command.upgrade(alembic_config(connection), "head")


def current(database: Database) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine(database).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
