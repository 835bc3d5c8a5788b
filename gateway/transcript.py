"""What an answer said and cost: usage and text from JSON bodies and SSE streams, bounded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from config.errors import GantryError
from config.repo_config import NetworkMode
from gateway.reach import screen
from gateway.routes import Provider

ANSWER_CAP = 16 * 1024
REQUEST_CAP = 16 * 1024
JSON_CAP = 8 * 1024 * 1024
EVENT_CAP = 4 * 1024 * 1024
REDACTED = "[REDACTED]"
TOOL_ITEMS = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
# Every request body is parsed (for the policy and the session log), up to the largest the
# gateway reads, and if it holds at most this many JSON items (commas, objects, arrays):
# parsing `[{},{},…]` costs some 25 times its size in memory.
PARSE_CAP = 32 * 1024 * 1024
PARSE_ITEMS = 250_000
# A JSON string, escapes included, or an unterminated one to the end of the body: it always
# matches at a quote, so skipping the strings is one pass.
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
STRINGS_CAP = 2 * PARSE_ITEMS + 2
TOO_MANY_ITEMS = f"its body has more than {PARSE_ITEMS:,} JSON items, too many to check"


class ReachingRequestError(GantryError):
    """A request that would have the provider do what the task's network policy forbids."""


class UninspectableRequestError(GantryError):
    """A request body too costly to parse, so it cannot be checked."""


class UnreadableRequestError(GantryError):
    """A request body that is not JSON the gateway can parse (invalid, or nested too deep)."""


@dataclass
class Answer:
    """The assembled answer of one exchange: token counts, text and tool calls, capped."""

    input_tokens: int = 0
    output_tokens: int = 0
    text: list[str] = field(default_factory=list)
    tools: dict[str, list[str]] = field(default_factory=dict)
    size: int = 0
    truncated: bool = False

    def add_text(self, piece: str) -> None:
        """Append answer text while under the cap."""
        if self._room(piece):
            self.text.append(piece)

    def add_tool(self, key: str, piece: str) -> None:
        """Append to tool call `key` (its name first, then argument pieces)."""
        if self._room(piece):
            self.tools.setdefault(key, []).append(piece)

    def _room(self, piece: str) -> bool:
        self.size += len(piece)
        self.truncated = self.truncated or self.size > ANSWER_CAP
        return not self.truncated

    def tool_calls(self) -> tuple[str, ...]:
        """Each tool call as `name(arguments)`."""
        return tuple(f"{parts[0]}({''.join(parts[1:])})" for parts in self.tools.values())

    def rendered_text(self) -> str:
        """The answer's text, marked when cut at the cap."""
        return "".join(self.text) + (" […]" if self.truncated else "")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def take_usage(answer: Answer, usage: object) -> None:
    """Read any provider's usage object; Anthropic's cached input counts as input too."""
    usage = _dict(usage)
    if not usage:
        return
    inputs = [
        _int(usage.get(name))
        for name in (
            "input_tokens",
            "prompt_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        )
    ]
    if any(inputs):
        answer.input_tokens = sum(inputs)
    output = _int(usage.get("output_tokens")) or _int(usage.get("completion_tokens"))
    if output:
        answer.output_tokens = output


def read_json(provider: Provider, body: bytes) -> Answer:
    """Usage, text and tool calls of a complete (non-streamed) JSON answer."""
    answer = Answer()
    try:
        parsed = _dict(json.loads(body)) if len(body) <= JSON_CAP else {}
    except (ValueError, UnicodeDecodeError):
        parsed = {}
    take_usage(answer, parsed.get("usage"))
    for n, block in enumerate(_list(parsed.get("content"))):  # Anthropic
        _anthropic_block(answer, str(n), _dict(block))
    for item in _list(parsed.get("output")):  # Responses
        _responses_item(answer, _dict(item))
    for choice in _list(parsed.get("choices")):  # Chat Completions
        message = _dict(_dict(choice).get("message"))
        _chat_delta(answer, message)
    return answer


def _anthropic_block(answer: Answer, key: str, block: dict[str, Any]) -> None:
    if block.get("type") == "text":
        answer.add_text(str(block.get("text", "")))
    elif block.get("type") == "tool_use":
        answer.add_tool(key, str(block.get("name", "")))
        if "input" in block:
            answer.add_tool(key, json.dumps(block["input"]))


def _responses_item(answer: Answer, item: dict[str, Any]) -> None:
    if item.get("type") == "message":
        for part in _list(item.get("content")):
            answer.add_text(str(_dict(part).get("text", "")))
    elif item.get("type") in TOOL_ITEMS:
        key = str(item.get("call_id") or item.get("id") or len(answer.tools))
        answer.add_tool(key, str(item.get("name") or item.get("type")))
        answer.add_tool(key, str(item.get("arguments") or item.get("input") or ""))


def _chat_delta(answer: Answer, delta: dict[str, Any]) -> None:
    if isinstance(delta.get("content"), str):
        answer.add_text(delta["content"])
    for n, call in enumerate(_list(delta.get("tool_calls"))):
        call = _dict(call)
        key, function = str(call.get("index", n)), _dict(call.get("function"))
        if function.get("name"):
            answer.add_tool(key, str(function["name"]))
        if function.get("arguments"):
            answer.add_tool(key, str(function["arguments"]))


class StreamReader:
    """Feeds on SSE bytes as they pass and keeps the answer; holds one partial event at most."""

    def __init__(self) -> None:
        self.answer = Answer()
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream, exactly as the upstream sent it."""
        self._pending = (self._pending + chunk).replace(b"\r\n", b"\n")
        *events, self._pending = self._pending.split(b"\n\n")
        if len(self._pending) > EVENT_CAP:
            self._pending = b""
        for event in events:
            self._event(event)

    def _event(self, raw: bytes) -> None:
        data = b"\n".join(
            line[5:].removeprefix(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")
        )
        if not data or data == b"[DONE]":
            return
        try:
            self.on_data(_dict(json.loads(data)))
        except (ValueError, UnicodeDecodeError):
            return

    def on_data(self, data: dict[str, Any]) -> None:
        """One parsed event of any of the three stream dialects."""
        answer, kind = self.answer, str(data.get("type", ""))
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            take_usage(answer, _dict(data.get("response")).get("usage"))
        elif kind == "response.output_text.delta":
            answer.add_text(str(data.get("delta", "")))
        elif kind == "response.output_item.done":
            _responses_item(answer, _dict(data.get("item")))
        elif kind == "message_start":
            take_usage(answer, _dict(data.get("message")).get("usage"))
        elif kind == "message_delta":
            take_usage(answer, data.get("usage"))
        elif kind == "content_block_start":
            _anthropic_block(answer, str(data.get("index")), _dict(data.get("content_block")))
        elif kind == "content_block_delta":
            self._anthropic_delta(str(data.get("index")), _dict(data.get("delta")))
        elif data.get("object") == "chat.completion.chunk":
            take_usage(answer, data.get("usage"))
            for choice in _list(data.get("choices")):
                _chat_delta(answer, _dict(_dict(choice).get("delta")))

    def _anthropic_delta(self, key: str, delta: dict[str, Any]) -> None:
        if delta.get("type") == "text_delta":
            self.answer.add_text(str(delta.get("text", "")))
        elif delta.get("type") == "input_json_delta":
            self.answer.add_tool(key, str(delta.get("partial_json", "")))


@dataclass(frozen=True)
class Inspected:
    """A request body the gateway read: its model, a digest for the session log, and the body
    to forward (as sent, or without the tools the task's policy drops)."""

    model: str | None
    digest: str
    body: bytes
    dropped: tuple[str, ...] = ()


def inspect_request(
    body: bytes, network: NetworkMode = "off", secrets: Iterable[str] = ()
) -> Inspected:
    """Parse a request, check it against the task's agent network policy (`gateway.reach`),
    and digest what is new in it for the session log. Every body is parsed: one too costly
    to parse is refused, never forwarded unchecked."""
    if not parseable(body):
        raise UninspectableRequestError(TOO_MANY_ITEMS)
    try:
        parsed = _dict(json.loads(body)) if body else {}
        reach = screen(parsed, network)
        if reach.body is not None:
            body = json.dumps(reach.body, separators=(",", ":")).encode()
        digest = _digest(parsed, tuple(secrets))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else "not valid JSON"
        raise UnreadableRequestError(reason) from None
    if reach.refused is not None:
        raise ReachingRequestError(reach.refused)
    model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
    return Inspected(model, digest, body, reach.dropped)


def _digest(parsed: dict[str, Any], secrets: tuple[str, ...]) -> str:
    """The request's last input item, redacted and capped. Its strings are cut first (a long
    history's last item can be megabytes), long enough that no secret starting inside the cap
    is cut."""
    history = _list(parsed.get("input")) or _list(parsed.get("messages"))
    latest = history[-1] if history else parsed.get("input", parsed)
    keep = REQUEST_CAP + max(map(len, secrets), default=0)
    text = json.dumps(_clipped(latest, keep), ensure_ascii=False)
    return _cap(redact(text, secrets), REQUEST_CAP)


def _clipped(value: Any, length: int) -> Any:
    """`value` with every string (keys too) cut to `length` characters."""
    if isinstance(value, str):
        return value[:length]
    if isinstance(value, list):
        return [_clipped(item, length) for item in value]
    if isinstance(value, dict):
        return {key[:length]: _clipped(item, length) for key, item in value.items()}
    return value


def parseable(body: bytes) -> bool:
    """Whether parsing `body` costs memory in proportion to its size (a few times, not 25):
    at most `PARSE_ITEMS` JSON items. Commas and brackets are counted outside strings only
    when the quick count (all of them) is over: code in a long history is full of commas."""
    if len(body) > PARSE_CAP:
        return False
    return _items(body) <= PARSE_ITEMS or _structure(body) <= PARSE_ITEMS


def _structure(body: bytes) -> int:
    """The JSON items outside strings, or past the cap. A string is at most two items' worth
    (a key and its value share one comma), so past twice the cap's strings the items are past
    it too, and the rest is not looked at. An unterminated string runs to the end: parsing
    stops there."""
    outside, strings = JSON_STRING.subn(b"", body, count=STRINGS_CAP)
    return PARSE_ITEMS + 1 if strings >= STRINGS_CAP else _items(outside)


def _items(body: bytes) -> int:
    return body.count(b",") + body.count(b"{") + body.count(b"[")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by a marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
