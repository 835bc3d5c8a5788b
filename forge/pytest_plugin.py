"""Pytest plugin: the `forge` fixture, a GitHub stand-in per test that fails on contract drift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from forge.server import Forge


@pytest_asyncio.fixture
async def forge(tmp_path: Path) -> AsyncIterator[Forge]:
    """A running stand-in on 127.0.0.1; unexpected OpenAPI violations fail the test."""
    stand_in = Forge(tmp_path / "forge")
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.close()
    left = stand_in.take_violations()
    if left:
        lines = "\n".join(f"  {v.method} {v.path}: {v.reason}" for v in left)
        pytest.fail(
            "requests GitHub's OpenAPI description rejects (call forge.take_violations() "
            f"in the test if they are expected):\n{lines}"
        )
