"""The model stand-in: the script decides per request; both APIs stream what clients parse."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from forge.model_script import Script, Text, ToolCall, add_file_patch, decide, shell_edit
from forge.models import ModelStandIn

KEY = "task-token-123"
TRICKY = "line 'one'\n$HOME `two` \"three\"\n"
CODEX_TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {}},
    {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "x"}]},
]
CLAUDE_TOOLS = [{"name": "Bash", "input_schema": {}}, {"name": "Write", "input_schema": {}}]
USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}
CALL = {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "c1"}
OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash"}]}
TOOL_RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}


def openai_body(*items: dict[str, Any], tools: list[Any] = CODEX_TOOLS) -> dict[str, Any]:
    """A Responses API request as Codex sends it."""
    return {"model": "gpt-test", "input": list(items), "tools": tools, "stream": True}


def claude_body(*messages: dict[str, Any], tools: list[Any] = CLAUDE_TOOLS) -> dict[str, Any]:
    """A Messages API request as Claude Code sends it."""
    return {"model": "claude-test", "messages": list(messages), "tools": tools, "stream": True}


# The script, decided per request.


def test_codex_gets_an_exec_command_call_then_the_answer() -> None:
    script = Script(path="a/b.txt", content="x\n")
    first = decide("openai", openai_body(USER), script)
    assert isinstance(first, ToolCall)
    assert first.name == "exec_command"
    assert json.loads(first.arguments) == {"cmd": shell_edit("a/b.txt", "x\n")}
    assert decide("openai", openai_body(USER, CALL, OUTPUT), script) == Text(script.answer)


def test_a_new_user_message_after_a_tool_output_starts_the_edit_again() -> None:
    reply = decide("openai", openai_body(USER, CALL, OUTPUT, USER), Script())
    assert isinstance(reply, ToolCall)


def test_runaway_never_answers() -> None:
    script = Script(kind="runaway")
    assert isinstance(decide("openai", openai_body(USER, CALL, OUTPUT), script), ToolCall)
    assert isinstance(decide("anthropic", claude_body(TOOL_USE, TOOL_RESULT), script), ToolCall)


def test_requests_without_tools_get_plain_text() -> None:
    assert isinstance(decide("openai", openai_body(USER, tools=[]), Script()), Text)
    assert isinstance(decide("anthropic", claude_body(USER, tools=[]), Script()), Text)


def test_codex_shell_tool_takes_an_argv() -> None:
    tools = [{"type": "function", "name": "shell"}]
    reply = decide("openai", openai_body(USER, tools=tools), Script(path="f", content="c"))
    assert isinstance(reply, ToolCall)
    assert json.loads(reply.arguments) == {"command": ["bash", "-lc", shell_edit("f", "c")]}


def test_codex_without_a_shell_gets_a_freeform_apply_patch() -> None:
    tools = [{"type": "custom", "name": "apply_patch"}]
    reply = decide("openai", openai_body(USER, tools=tools), Script(path="f.md", content="a\nb\n"))
    assert reply == ToolCall("apply_patch", add_file_patch("f.md", "a\nb\n"), custom=True)
    assert reply.arguments == "*** Begin Patch\n*** Add File: f.md\n+a\n+b\n*** End Patch\n"


def test_codex_code_mode_gets_javascript_for_its_exec_tool() -> None:
    exec_tool = {"type": "custom", "name": "exec", "description": "Run JavaScript"}
    namespace = {"type": "namespace", "name": "functions", "tools": [exec_tool]}
    offered = {"type": "additional_tools", "role": "developer", "tools": [namespace]}
    reply = decide("openai", openai_body(offered, USER, tools=[]), Script(path="f", content="c"))
    assert isinstance(reply, ToolCall)
    assert (reply.name, reply.custom, reply.namespace) == ("exec", True, "functions")
    cmd = json.dumps({"cmd": shell_edit("f", "c")})
    assert reply.arguments == f"await tools.exec_command({cmd});"
    output = {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}
    assert isinstance(
        decide("openai", openai_body(offered, USER, output, tools=[]), Script()), Text
    )


def test_claude_gets_bash_and_the_answer_after_the_tool_result() -> None:
    first = decide("anthropic", claude_body(USER), Script(path="p", content="c"))
    assert isinstance(first, ToolCall)
    assert first.name == "Bash"
    assert json.loads(first.arguments)["command"] == shell_edit("p", "c")
    assert isinstance(decide("anthropic", claude_body(USER, TOOL_USE, TOOL_RESULT), Script()), Text)


def test_claude_without_bash_writes_in_its_stated_working_directory() -> None:
    system = {"role": "user", "content": "Primary working directory: /repo/x\nmore"}
    body = claude_body(system, tools=[{"name": "Write"}])
    reply = decide("anthropic", body, Script(path="d/f.txt", content="c"))
    assert isinstance(reply, ToolCall)
    assert json.loads(reply.arguments) == {"file_path": "/repo/x/d/f.txt", "content": "c"}


def test_no_usable_tool_is_an_error() -> None:
    with pytest.raises(ValueError, match="no tool"):
        decide(
            "openai",
            openai_body(USER, tools=[{"type": "function", "name": "view_image"}]),
            Script(),
        )


def test_the_shell_edit_writes_exactly_the_content(tmp_path: Path) -> None:
    subprocess.run(["bash", "-c", shell_edit("deep/dir/out.txt", TRICKY)], cwd=tmp_path, check=True)
    assert (tmp_path / "deep/dir/out.txt").read_text() == TRICKY


# The server, over HTTP.


@pytest_asyncio.fixture
async def stand_in() -> AsyncIterator[ModelStandIn]:
    """A stand-in that wants KEY."""
    async with ModelStandIn(Script(path="f.txt", content="hi\n"), expected_key=KEY) as running:
        yield running


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def sse(response: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each frame of a streamed answer."""
    assert response.headers["Content-Type"].startswith("text/event-stream")
    frames = (await response.text()).strip().split("\n\n")
    events = []
    for frame in frames:
        name, data = frame.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


async def test_openai_stream_carries_the_call_and_completes_with_usage(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    url = stand_in.url() + "/openai/v1/responses"
    async with client.post(url, json=openai_body(USER), headers=headers) as response:
        assert response.status == 200
        events = await sse(response)
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.output_item.added"]
    assert names[-2:] == ["response.output_item.done", "response.completed"]
    item = events[-2][1]["item"]
    assert item["type"] == "function_call"
    assert item["name"] == "exec_command"
    deltas = "".join(d["delta"] for n, d in events if n.endswith("arguments.delta"))
    assert deltas == item["arguments"]
    completed = events[-1][1]["response"]
    usage = completed["usage"]
    assert completed["id"].startswith("resp_")
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    recorded = stand_in.model_requests("openai")
    assert [r.api_key for r in recorded] == [KEY]
    assert recorded[0].body == openai_body(USER)
    assert recorded[0].usage is not None
    assert recorded[0].usage.input_tokens == usage["input_tokens"]


async def test_openai_text_streams_as_deltas_and_whole_json_without_stream(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    stand_in.script = Script(answer="a long enough final answer to need several deltas")
    headers = {"Authorization": f"Bearer {KEY}"}
    url = stand_in.url() + "/v1/responses"
    async with client.post(url, json=openai_body(USER, CALL, OUTPUT), headers=headers) as response:
        events = await sse(response)
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == stand_in.script.answer
    whole = openai_body(USER, CALL, OUTPUT) | {"stream": False}
    async with client.post(url, json=whole, headers=headers) as response:
        body = await response.json()
    assert body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == stand_in.script.answer


async def test_anthropic_stream_builds_a_tool_use_from_json_deltas(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    url = stand_in.url() + "/anthropic/v1/messages?beta=true"
    async with client.post(url, json=claude_body(USER), headers={"x-api-key": KEY}) as response:
        assert response.status == 200
        events = await sse(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    block = events[2][1]["content_block"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "Bash", {})
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial)["command"] == shell_edit("f.txt", "hi\n")
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"]["output_tokens"] > 0
    assert stand_in.model_requests("anthropic")[0].query == "beta=true"


async def test_anthropic_whole_message_and_bearer_key(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    body = claude_body(USER, TOOL_USE, TOOL_RESULT) | {"stream": False}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with client.post(stand_in.url() + "/v1/messages", json=body, headers=headers) as response:
        message = await response.json()
    assert message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": stand_in.script.answer}]


async def test_a_wrong_key_gets_401_in_each_providers_shape(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    bad = {"Authorization": "Bearer nope", "x-api-key": "nope"}
    async with client.post(stand_in.url() + "/v1/responses", json={}, headers=bad) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_api_key"
    async with client.post(stand_in.url() + "/v1/messages", json={}) as response:
        assert response.status == 401
        body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert [r.status for r in stand_in.received] == [401, 401]


async def test_fail_with_answers_the_next_requests_then_recovers(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    stand_in.fail_with(429, count=2)
    url = stand_in.url() + "/anthropic/v1/messages"
    statuses = []
    for _ in range(3):
        async with client.post(url, json=claude_body(USER), headers={"x-api-key": KEY}) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert (await r.json())["error"]["type"] == "rate_limit_error"
    assert statuses == [429, 429, 200]
    stand_in.fail_with(500)
    async with client.post(url, json=claude_body(USER), headers={"x-api-key": KEY}) as r:
        assert r.status == 500
        assert (await r.json())["error"]["type"] == "api_error"


async def test_a_request_the_script_cannot_answer_is_a_recorded_500(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    body = openai_body(USER, tools=[{"type": "function", "name": "view_image"}])
    headers = {"Authorization": f"Bearer {KEY}"}
    async with client.post(stand_in.url() + "/v1/responses", json=body, headers=headers) as r:
        assert r.status == 500
        assert "view_image" in (await r.json())["error"]["message"]
    assert [r.status for r in stand_in.model_requests()] == [500]


async def test_other_paths_are_404_and_recorded(
    stand_in: ModelStandIn, client: aiohttp.ClientSession
) -> None:
    async with client.head(stand_in.url() + "/api/hello") as response:
        assert response.status == 404
    async with client.get(stand_in.url() + "/_stand_in/received") as response:
        listed = await response.json()
    assert [(r["method"], r["path"], r["status"]) for r in listed] == [("HEAD", "/api/hello", 404)]
    assert stand_in.model_requests() == []
