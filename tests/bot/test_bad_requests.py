"""Malformed requests from anyone on the network are answered 400 without filling the log."""

from __future__ import annotations

import asyncio
import logging

import pytest
from yarl import URL

from tests.bot.conftest import Gantry

MALFORMED = (
    b"POST /webhook HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
)


async def send_raw(url: URL, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.read(100)
    finally:
        writer.close()


async def flood_leaves_one_quiet_line_each(url: URL, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(20):
        for payload in MALFORMED:
            assert (await send_raw(url, payload)).startswith(b"HTTP/1.0 400")
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r for r in server if r.levelno > logging.DEBUG] == []
    assert not [r for r in caplog.records if r.exc_info]


async def test_malformed_requests_to_the_webhook_leave_no_tracebacks(
    gantry: Gantry, caplog: pytest.LogCaptureFixture
) -> None:
    await flood_leaves_one_quiet_line_each(gantry.server.make_url("/"), caplog)
