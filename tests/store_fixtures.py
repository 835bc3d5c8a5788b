"""Both stores behind one fixture: a conformance test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from config.database import Database
from runner.store import TaskStore
from runner.stores import open_store

ENGINES = ["sqlite", "postgresql"]


def database_for(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> Database:
    """A fresh database of `engine` for one test."""
    if engine == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'gantry.db'}")
    return Database(str(request.getfixturevalue("postgres_url")))


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A fresh database, once per engine."""
    return database_for(request, tmp_path, str(request.param))


@pytest_asyncio.fixture
async def any_store(database: Database) -> AsyncIterator[TaskStore]:
    """An open store on a fresh database, once per engine."""
    store = await open_store(database)
    yield store
    await store.close()
