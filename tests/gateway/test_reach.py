"""Provider-side tools by the task's `network.agent` policy, played through the gateway and
judged by what reaches the upstream and what the agent is told."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.repo_config import NetworkMode
from gateway import Budget
from tests.gateway.conftest import Rig

MIB = 1024 * 1024
RESPONSES, CHAT = "/openai/v1/responses", "/openai/v1/chat/completions"
MESSAGES = "/anthropic/v1/messages"
SHELL = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
EDIT = {"name": "Edit", "input_schema": {"type": "object"}}
# What Codex sends with every request by default (`web_search = "cached"`, live when it runs
# with its sandbox bypassed, as Gantry's preset does).
CODEX_SEARCH = {"type": "web_search", "external_web_access": True}


def tools(*listed: dict[str, Any]) -> dict[str, Any]:
    return {"tools": list(listed)}


def additional(*listed: dict[str, Any]) -> dict[str, Any]:
    """Codex's "code mode": no `tools`, the tools in an input item of their own."""
    item = {"type": "additional_tools", "role": "developer", "tools": list(listed)}
    return {"tools": [], "input": [item, {"role": "user", "content": "hi"}]}


def namespace(*listed: dict[str, Any]) -> dict[str, Any]:
    return {"type": "namespace", "name": "functions", "tools": list(listed)}


async def send(rig: Rig, network: NetworkMode, path: str, extra: dict[str, Any]) -> tuple[int, Any]:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60), network=network)
    headers = rig.openai(token) if path.startswith("/openai") else rig.anthropic(token)
    body = {"model": "m", "input": "hi", "messages": [], **extra}
    status, answer = await rig.post(path, headers, body)
    return status, json.loads(answer)


def message(answer: Any) -> str:
    return str(answer["error"]["message"])


REFUSED_EVERYWHERE = [
    (RESPONSES, tools(SHELL, {"type": "file_search", "vector_store_ids": ["vs_1"]}), "file_search"),
    (RESPONSES, tools({"type": "mcp", "server_url": "https://x.example"}), "`mcp`"),
    (RESPONSES, additional(SHELL, {"type": "mcp", "server_url": "https://x.example"}), "`mcp`"),
    (RESPONSES, tools(namespace(SHELL, {"type": "file_search"})), "file_search"),
    (MESSAGES, {"mcp_servers": [{"type": "url", "url": "https://x.example/mcp"}]}, "mcp_servers"),
    (MESSAGES, tools(EDIT, {"type": "mcp_toolset", "mcp_server_name": "x"}), "mcp_toolset"),
    (MESSAGES, tools({"type": "web_fetch_20250910", "name": "web_fetch"}), "web_fetch_20250910"),
]
REFUSED_UNDER_OFF = [
    (RESPONSES, tools(SHELL, {"type": "code_interpreter", "container": {"type": "auto"}}), "code"),
    (MESSAGES, tools(EDIT, {"type": "code_execution_20250825", "name": "code_execution"}), "run"),
    (MESSAGES, tools({"type": "web_search_20250305", "name": "web_search"}), "search the web"),
    (RESPONSES, tools({"type": "web_search_preview"}), "search the web"),
    (CHAT, {"web_search_options": {}}, "web_search_options"),
]


@pytest.mark.parametrize("network", ["off", "limited", "full"])
@pytest.mark.parametrize(("path", "extra", "named"), REFUSED_EVERYWHERE)
async def test_tools_that_reach_out_or_read_the_account_never_go_upstream(
    rig: Rig, network: NetworkMode, path: str, extra: dict[str, Any], named: str
) -> None:
    status, answer = await send(rig, network, path, extra)
    assert status == 400
    assert "Gantry's gateway refuses" in message(answer)
    assert named in message(answer)
    assert rig.upstream.seen == []
    assert rig.gateway.close_task("t1").errors == (message(answer),)


@pytest.mark.parametrize(("path", "extra", "named"), REFUSED_UNDER_OFF)
async def test_under_off_search_and_code_on_the_provider_never_go_upstream(
    rig: Rig, path: str, extra: dict[str, Any], named: str
) -> None:
    status, answer = await send(rig, "off", path, extra)
    assert status == 400
    assert "under `network.agent: off`" in message(answer)
    assert named in message(answer)
    assert rig.upstream.seen == []


@pytest.mark.parametrize("network", ["limited", "full"])
@pytest.mark.parametrize(("path", "extra", "_named"), REFUSED_UNDER_OFF)
async def test_with_a_network_search_and_code_go_upstream_as_sent(
    rig: Rig, network: NetworkMode, path: str, extra: dict[str, Any], _named: str
) -> None:
    status, _answer = await send(rig, network, path, extra)
    assert status == 200
    [seen] = rig.upstream.seen
    sent = json.loads(seen.body)
    assert {key: sent[key] for key in extra} == extra


async def test_a_task_opened_without_a_policy_is_held_to_off(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**6, 60))
    body = {"model": "m", "input": "hi", **tools({"type": "web_search_preview"})}
    assert (await rig.post(RESPONSES, rig.openai(token), body))[0] == 400
    assert rig.upstream.seen == []


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        (tools(SHELL, CODEX_SEARCH), tools(SHELL)),
        (additional(SHELL, CODEX_SEARCH), additional(SHELL)),
        (tools(namespace(SHELL, CODEX_SEARCH), CODEX_SEARCH), tools(namespace(SHELL))),
    ],
)
async def test_under_off_codexs_web_search_is_dropped_and_the_rest_goes_upstream(
    rig: Rig, extra: dict[str, Any], kept: dict[str, Any]
) -> None:
    status, _answer = await send(rig, "off", RESPONSES, extra)
    assert status == 200
    [seen] = rig.upstream.seen
    sent = json.loads(seen.body)
    assert {key: sent[key] for key in kept} == kept
    assert b"web_search" not in seen.body


async def test_claude_codes_search_request_under_off_is_refused_with_a_reason(rig: Rig) -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
    extra = {"messages": [{"role": "user", "content": "Perform a web search"}], **tools(search)}
    status, answer = await send(rig, "off", MESSAGES, extra)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert "`web_search_20250305` tool under `network.agent: off`" in message(answer)
    assert rig.upstream.seen == []


def code_history(size: int) -> list[dict[str, str]]:
    """A long session's history: source code, full of commas (over 250,000 of them)."""
    code = "def f(a, b, c):\n    return {'x': [a, b, c], 'y': (a, b)}\n" * 50
    return [{"role": "user", "content": code} for _ in range(size // len(code))]


async def test_a_body_past_the_old_parse_limit_is_still_checked(rig: Rig) -> None:
    messages = code_history(12 * MIB)
    mcp = {"type": "mcp", "server_url": "https://x.example"}
    status, answer = await send(rig, "full", RESPONSES, {"input": messages, **tools(mcp)})
    assert status == 400
    assert "`mcp`" in message(answer)
    assert rig.upstream.seen == []


async def test_a_long_session_past_the_old_parse_limit_still_goes_upstream(rig: Rig) -> None:
    token = rig.gateway.open_task("t1", Budget(10, 10**9, 60))
    body = json.dumps({"model": "m", "input": code_history(20 * MIB), **tools(SHELL)}).encode()
    assert len(body) > 20 * MIB
    assert body.count(b",") > 250_000
    async with rig.client.post(rig.base + RESPONSES, data=body, headers=rig.openai(token)) as r:
        assert r.status == 200
    assert rig.upstream.seen[0].body == body
