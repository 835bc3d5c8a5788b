"""The `forge` fixture fails a test that leaves contract violations behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = """
import aiohttp

async def test_leaves_a_violation(forge):
    async with aiohttp.ClientSession() as session:
        async with session.get(forge.api_url + "/made/up/path") as response:
            assert response.status == 404

async def test_clears_its_violation(forge):
    async with aiohttp.ClientSession() as session:
        async with session.get(forge.api_url + "/made/up/path") as response:
            assert response.status == 404
    assert len(forge.take_violations()) == 1
"""


def test_unexpected_violation_fails_at_teardown(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "forge.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "test_sample.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout
    assert "ERROR at teardown of test_leaves_a_violation" in result.stdout
    assert "GET /made/up/path: no operation GET /made/up/path" in result.stdout
