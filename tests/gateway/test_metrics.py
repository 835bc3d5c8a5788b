"""Gateway metrics: requests by provider and status, and the ledger's tokens, scraped."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import Budget
from tests.gateway.conftest import Rig
from tests.support import Scrape, scrape

BIG = Budget(requests=100, tokens=10**6, seconds=600)


async def scraped(rig: Rig) -> Scrape:
    server = TestServer(rig.gateway.metrics.app())
    await server.start_server()
    try:
        return await scrape(str(server.make_url("/metrics")))
    finally:
        await server.close()


def requests(found: Scrape) -> dict[tuple[str, str], float]:
    series = found.series("gantry_gateway_requests_total")
    return {(dict(labels)["provider"], dict(labels)["status"]): v for labels, v in series.items()}


async def test_requests_by_provider_and_status_and_the_ledgers_tokens(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", BIG)
    openai, anthropic = rig.openai(token), rig.anthropic(token)
    stream = {"model": "gpt-a", "stream": True, "input": [{"role": "user", "content": "ls"}]}
    assert (await rig.post("/openai/v1/responses", openai, stream))[0] == 200
    assert (await rig.post("/openai/v1/chat/completions", openai, {"model": "b"}))[0] == 200
    messages = {"model": "claude-c", "stream": True, "messages": [{"role": "user", "content": "e"}]}
    assert (await rig.post("/anthropic/v1/messages", anthropic, messages))[0] == 200
    assert (await rig.post("/anthropic/v1/messages", anthropic, {"model": "c"}))[0] == 200
    assert (await rig.post("/openai/v1/responses", rig.openai("gantry-made-up")))[0] == 401

    async def overloaded(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "slow down"}}, status=429)

    rig.upstream.override = overloaded
    assert (await rig.post("/anthropic/v1/messages", anthropic, {"model": "c"}))[0] == 429
    usage = rig.gateway.close_task("t1")

    found = await scraped(rig)
    assert requests(found) == {
        ("openai", "200"): 2,
        ("anthropic", "200"): 2,
        ("openai", "401"): 1,
        ("anthropic", "429"): 1,
    }
    tokens = {
        (provider, direction): found(
            "gantry_gateway_tokens_total", provider=provider, direction=direction
        )
        for provider in ("openai", "anthropic")
        for direction in ("input", "output")
    }
    assert tokens == {
        ("openai", "input"): 120 + 21,
        ("openai", "output"): 7 + 3,
        ("anthropic", "input"): 80 + 11,
        ("anthropic", "output"): 9 + 4,
    }
    assert tokens[("openai", "input")] + tokens[("anthropic", "input")] == usage.input_tokens
    assert tokens[("openai", "output")] + tokens[("anthropic", "output")] == usage.output_tokens


async def test_a_spent_budget_is_counted_as_refused_and_never_forwarded(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(requests=1, tokens=10**6, seconds=600))
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 200
    assert (await rig.post("/openai/v1/responses", rig.openai(token)))[0] == 403
    rig.gateway.close_task("t1")
    assert requests(await scraped(rig)) == {("openai", "200"): 1, ("openai", "403"): 1}
    assert len(rig.upstream.seen) == 1
