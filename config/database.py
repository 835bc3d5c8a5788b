"""Which database `GANTRY_DATABASE_URL` names: SQLite (the embedded default) or PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Database:
    """A database URL, checked: `sqlite:///PATH` or `postgresql://…`."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith((SQLITE_PREFIX, *POSTGRES_SCHEMES)):
            raise ValueError("must start with sqlite:/// or postgresql://")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        if self.url.startswith(SQLITE_PREFIX):
            return Path(self.url.removeprefix(SQLITE_PREFIX))
        return None

    @property
    def is_postgres(self) -> bool:
        return self.sqlite_path is None

    @property
    def conninfo(self) -> str:
        """The URL as libpq (psycopg) takes it."""
        scheme, rest = self.url.split("://", 1)
        return f"postgresql://{rest}" if scheme == "postgres" else self.url

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy (the migrations), with the psycopg 3 driver on PostgreSQL."""
        if self.sqlite_path is not None:
            return self.url
        return "postgresql+psycopg://" + self.conninfo.split("://", 1)[1]
