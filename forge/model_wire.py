"""The model stand-in's wire formats: a scripted reply as the OpenAI Responses API or the
Anthropic Messages API renders it, streamed (SSE events) or whole (JSON), and errors in
each provider's shape. Pure: ids are passed in."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from forge.model_script import Api, Reply, Text, ToolCall

SseEvent = tuple[str, dict[str, Any]]
# Pieces a streamed text or tool input is cut into, so clients see real deltas.
DELTA_CHARS = 16
OPENAI_ERROR_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
ANTHROPIC_ERROR_TYPES = {
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reports them (estimated: about four bytes a token)."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        """Input plus output."""
        return self.input_tokens + self.output_tokens


def estimate_usage(body: object, reply: Reply) -> Usage:
    """Deterministic token counts for a request and its reply."""
    sent = len(json.dumps(body, separators=(",", ":")))
    answered = len(reply.text if isinstance(reply, Text) else reply.arguments)
    return Usage(max(1, sent // 4), max(1, answered // 4))


def pieces(text: str) -> list[str]:
    """`text` cut into deltas (one empty delta for empty text)."""
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


def sse_bytes(event: SseEvent) -> bytes:
    """One SSE frame: `event:` line, `data:` JSON line, blank line."""
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# OpenAI Responses API.


def openai_item(reply: Reply, item_id: str, call_id: str) -> dict[str, Any]:
    """The finished output item of a reply."""
    if isinstance(reply, Text):
        content = [{"type": "output_text", "text": reply.text, "annotations": []}]
        return {
            "type": "message",
            "id": item_id,
            "role": "assistant",
            "status": "completed",
            "content": content,
        }
    item: dict[str, Any] = {"id": item_id, "call_id": call_id, "name": reply.name}
    item |= {"status": "completed"}
    if reply.namespace:
        item["namespace"] = reply.namespace
    if reply.custom:
        return {"type": "custom_tool_call", **item, "input": reply.arguments}
    return {"type": "function_call", **item, "arguments": reply.arguments}


def openai_response(
    response_id: str, model: str, item: dict[str, Any] | None, usage: Usage | None
) -> dict[str, Any]:
    """A Response object; in progress until it has its item and usage."""
    done = usage is not None
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if done else "in_progress",
        "model": model,
        "output": [item] if item is not None else [],
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


def openai_events(
    reply: Reply, response_id: str, item_id: str, call_id: str, model: str, usage: Usage
) -> list[SseEvent]:
    """The stream Codex's parser needs: created, item added, deltas, item done, completed."""
    item = openai_item(reply, item_id, call_id)
    started = {**item, "status": "in_progress"}
    if isinstance(reply, Text):
        started["content"] = []
    events: list[SseEvent] = [
        (
            "response.created",
            _typed("response.created", response=openai_response(response_id, model, None, None)),
        ),
        (
            "response.output_item.added",
            _typed("response.output_item.added", output_index=0, item=started),
        ),
    ]
    if isinstance(reply, Text):
        for delta in pieces(reply.text):
            data = _typed(
                "response.output_text.delta",
                item_id=item_id,
                output_index=0,
                content_index=0,
                delta=delta,
            )
            events.append(("response.output_text.delta", data))
    else:
        kind = "custom_tool_call_input" if reply.custom else "function_call_arguments"
        for delta in pieces(reply.arguments):
            name = f"response.{kind}.delta"
            events.append((name, _typed(name, item_id=item_id, output_index=0, delta=delta)))
    done = _typed("response.output_item.done", output_index=0, item=item)
    completed = openai_response(response_id, model, item, usage)
    events.append(("response.output_item.done", done))
    events.append(("response.completed", _typed("response.completed", response=completed)))
    return events


def _typed(kind: str, **fields: Any) -> dict[str, Any]:
    """An event payload carrying its own `type`, as OpenAI's does."""
    return {"type": kind, **fields}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """An error body in OpenAI's shape."""
    kind, code = OPENAI_ERROR_TYPES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# Anthropic Messages API.


def anthropic_block(reply: Reply, block_id: str) -> dict[str, Any]:
    """The finished content block of a reply."""
    if isinstance(reply, Text):
        return {"type": "text", "text": reply.text}
    return {
        "type": "tool_use",
        "id": block_id,
        "name": reply.name,
        "input": json.loads(reply.arguments),
    }


def anthropic_message(
    message_id: str, model: str, reply: Reply, block_id: str, usage: Usage
) -> dict[str, Any]:
    """A whole Message (the non-streaming answer)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [anthropic_block(reply, block_id)],
        "stop_reason": stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    }


def stop_reason(reply: Reply) -> str:
    """Why the turn stopped: a tool call or the end of the answer."""
    return "tool_use" if isinstance(reply, ToolCall) else "end_turn"


def anthropic_events(
    reply: Reply, message_id: str, block_id: str, model: str, usage: Usage
) -> list[SseEvent]:
    """message_start, ping, one content block with its deltas, message_delta, message_stop."""
    start = anthropic_message(message_id, model, reply, block_id, Usage(usage.input_tokens, 1))
    start |= {"content": [], "stop_reason": None}
    events: list[SseEvent] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    block = anthropic_block(reply, block_id)
    if isinstance(reply, Text):
        opening: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(reply.text)]
    else:
        opening = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece} for piece in pieces(reply.arguments)
        ]
    events.append(
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": opening},
        )
    )
    for delta in deltas:
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    ending = {"stop_reason": stop_reason(reply), "stop_sequence": None}
    message_delta = {"type": "message_delta", "delta": ending}
    message_delta["usage"] = {"output_tokens": usage.output_tokens}
    events.append(("message_delta", message_delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An error body in Anthropic's shape."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(api: Api, status: int, message: str) -> dict[str, Any]:
    """An error body in the shape of `api`."""
    return openai_error(status, message) if api == "openai" else anthropic_error(status, message)
