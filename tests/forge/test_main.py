"""`python -m forge` starts a stand-in a demo can use."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_LINE = r"http://127\.0\.0\.1:\d+/acme/demo\.git \(installation \d+\)"


async def test_standalone_prints_urls_and_serves(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README.md").write_text("demo\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "forge",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--repo",
        f"acme/demo={tmp_path / 'src'}",
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(4)]
        fields = dict(line.split(":", 1) for line in lines)
        api = fields["REST API"].strip()
        assert "private key=" in fields["App"]
        assert (tmp_path / "data" / "app-private-key.pem").read_text().startswith("-----BEGIN")
        assert re.fullmatch(REPO_LINE, fields["repo"].strip())
        async with aiohttp.ClientSession() as session, session.get(f"{api}/app") as response:
            assert response.status == 401
    finally:
        proc.terminate()
        await proc.wait()
