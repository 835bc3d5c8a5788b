"""Unsigned bodies cannot make the server hold memory without bound: a flood of large bodies
trickled in by anyone who reaches the webhook, through the real app on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from bot.app import BODIES
from bot.body_budget import SMALL_BODY_BYTES, BodyBudget, Pool
from bot.webhook import MAX_BODY_BYTES, WebhookRejectedError, sign
from config.settings import Settings
from forge.server import Forge
from gantry.compose import create_app

SECRET = "webhook-secret-for-tests"
MIB = 1024 * 1024
CHUNK = 256 * 1024
ANSWER_WITHIN = 5.0  # seconds: a server that has not answered by then never will
# GitHub's largest body, all whitespace: parsing it would be cheap, holding many is not.
BIG = b"{" + b" " * (MAX_BODY_BYTES - 2) + b"}"
HEAD = (
    "POST /webhook HTTP/1.1\r\nHost: gantry\r\nContent-Type: application/json\r\n"
    "X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\n"
    "X-Hub-Signature-256: {signature}\r\nContent-Length: {length}\r\n\r\n"
)
BOGUS = "sha256=" + "0" * 64
PING = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

Serve = Callable[[BodyBudget], Awaitable[TestServer]]


@pytest_asyncio.fixture
async def serve(forge: Forge, tmp_path: Path) -> AsyncIterator[Serve]:
    """Start `gantry serve` (no workers) with a budget of the test's choosing."""
    creds = forge.register_app("gantry")
    settings = Settings(
        github_webhook_secret=SECRET,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=tmp_path / "data",
    )
    servers: list[TestServer] = []

    async def start(budget: BodyBudget) -> TestServer:
        app = create_app(settings, workers=False)
        app[BODIES] = budget
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


class Sender:
    """A client posting a body: all of it but its last byte, and the rest when told."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, last: bytes
    ) -> None:
        self.reader, self.writer, self.last = reader, writer, last

    @classmethod
    async def all_but_last(
        cls,
        server: TestServer,
        delivery: str,
        body: bytes = BIG,
        signature: str = BOGUS,
        event: str = "issue_comment",
    ) -> Sender:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        head = HEAD.format(event=event, delivery=delivery, signature=signature, length=len(body))
        writer.write(head.encode())
        view = memoryview(body)[:-1]
        with contextlib.suppress(ConnectionError):  # refused: the server may stop listening
            for start in range(0, len(view), CHUNK):
                writer.write(view[start : start + CHUNK])
                await writer.drain()
        return cls(reader, writer, body[-1:])

    async def head(self) -> bytes:
        """The status line and headers the server answered with."""
        async with asyncio.timeout(ANSWER_WITHIN):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def status(self) -> int:
        """The status the server answered with."""
        return int((await self.head()).split()[1])

    async def finish(self) -> int:
        """Send the last byte; the status the server answered with."""
        with contextlib.suppress(ConnectionError):
            self.writer.write(self.last)
            await self.writer.drain()
        return await self.status()

    async def answer(self) -> tuple[int, object]:
        """Send the last byte; the status and JSON the server answered with."""
        status = await self.finish()
        async with asyncio.timeout(ANSWER_WITHIN):
            return status, json.loads(await self.reader.readuntil(b"}"))

    def close(self) -> None:
        self.writer.close()


async def test_a_flood_of_unsigned_bodies_holds_little_memory_and_real_deliveries_pass(
    serve: Serve,
) -> None:
    server = await serve(BodyBudget(read_seconds=120))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        senders = await asyncio.gather(*(Sender.all_but_last(server, f"f{n}") for n in range(8)))
        # A genuine delivery that is slow to come in too, while large bodies fill the budget.
        real = await Sender.all_but_last(server, "real", PING, sign(SECRET, PING), "ping")
        await asyncio.sleep(0.1)  # the server starts on it before its last byte is in
        answered = await real.answer()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    statuses = await asyncio.gather(*(sender.finish() for sender in senders))
    for sender in (*senders, real):
        sender.close()
    # 8 bodies of 25 MiB held at once would be 200 MiB; the budget admits two.
    assert (peak - before) // MIB < 80, f"{(peak - before) // MIB} MiB held for unsigned bodies"
    assert answered == (200, {"outcome": "pong"})
    assert sorted(statuses) == [401] * 2 + [503] * 6


async def test_a_refused_body_is_told_when_to_come_back(serve: Serve) -> None:
    server = await serve(BodyBudget(read_seconds=120, pools=[Pool(MIB, MIB)]))
    holder = await Sender.all_but_last(server, "holder", b"{" + b" " * (MIB - 2) + b"}")
    await asyncio.sleep(0.05)  # the server has begun reading it
    refused = await Sender.all_but_last(server, "refused", b"{}")
    headers = await refused.head()
    assert headers.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 120\r\n" in headers
    assert await holder.finish() == 401
    for sender in (holder, refused):
        sender.close()


async def test_a_body_trickled_past_the_deadline_is_cut_off_and_frees_its_room(
    serve: Serve,
) -> None:
    server = await serve(BodyBudget(read_seconds=0.5))
    stalled = await asyncio.gather(*(Sender.all_but_last(server, f"s{n}") for n in range(2)))
    assert [await sender.status() for sender in stalled] == [408, 408]
    # The room they held is free again: the next large body is read (and found unsigned).
    after = await Sender.all_but_last(server, "after")
    assert await after.finish() == 401
    for sender in (*stalled, after):
        sender.close()


async def test_a_body_of_unknown_length_is_refused_unread(serve: Serve) -> None:
    server = await serve(BodyBudget())

    async def chunks() -> AsyncIterator[bytes]:
        yield b"{}"

    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "chunked",
        "X-Hub-Signature-256": sign(SECRET, b"{}"),
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/webhook"), data=chunks(), headers=headers) as response,
    ):
        assert response.status == 411


def refusal(budget: BodyBudget, size: int) -> WebhookRejectedError | None:
    """Why `budget` refuses a body of `size` bytes right now, if it does."""
    try:
        with budget.reserved(size):
            return None
    except WebhookRejectedError as exc:
        return exc


def test_small_bodies_keep_an_allowance_of_their_own_when_large_ones_fill_the_pool() -> None:
    budget = BodyBudget()
    with budget.reserved(MAX_BODY_BYTES), budget.reserved(MAX_BODY_BYTES):
        full = refusal(budget, MAX_BODY_BYTES)
        assert full is not None
        assert (full.status, full.retry_after) == (503, 10)
        assert refusal(budget, SMALL_BODY_BYTES) is None
        assert refusal(budget, SMALL_BODY_BYTES + 1) is not None
        with budget.reserved(SMALL_BODY_BYTES):
            assert budget.held == 2 * MAX_BODY_BYTES + SMALL_BODY_BYTES
    assert budget.held == 0


def test_a_failed_read_gives_its_room_back() -> None:
    budget = BodyBudget()
    with pytest.raises(ConnectionResetError), budget.reserved(MIB):
        raise ConnectionResetError
    assert budget.held == 0
