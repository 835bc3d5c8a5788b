"""The model stand-in's scripted conversation: what to answer to a request, decided purely.

A request is answered from what it carries, not from a turn counter, so side requests of a
CLI (titles, quota probes) do not shift the script: no tools offered → a plain answer; a
tool result after the last user message → the final answer; otherwise → the scripted tool
call, in a tool the request offers.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Api = Literal["openai", "anthropic"]
ScriptKind = Literal["edit", "runaway", "text"]

DEFAULT_PATH = "GANTRY_EDIT.md"
DEFAULT_CONTENT = "edited by the model stand-in\n"
DEFAULT_ANSWER = "Done: the scripted edit is made."
OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
# Codex's tool names, best first: each takes a shell command in its own argument shape.
OPENAI_SHELL_TOOLS = ("exec_command", "shell_command", "shell", "container.exec")
CLAUDE_WORKDIR_RE = re.compile(r"(?:Primary working directory|Working directory):\s*(/\S+)")


@dataclass(frozen=True)
class Script:
    """What the stand-in's model does: edit a file then answer, edit forever, or just answer."""

    kind: ScriptKind = "edit"
    path: str = DEFAULT_PATH
    content: str = DEFAULT_CONTENT
    answer: str = DEFAULT_ANSWER
    # A shell command the tool call runs after the edit (a probe, in tests); shell tools only.
    then: str | None = None

    def shell_command(self) -> str:
        """The shell command of the scripted tool call."""
        edit = shell_edit(self.path, self.content)
        return f"{edit} && {self.then}" if self.then else edit


@dataclass(frozen=True)
class ToolCall:
    """A call of one tool the request offered; `arguments` is JSON, or raw text for `custom`."""

    name: str
    arguments: str
    custom: bool = False
    namespace: str | None = None


@dataclass(frozen=True)
class Text:
    """A plain assistant answer that ends the turn."""

    text: str


Reply = ToolCall | Text


def shell_edit(path: str, content: str) -> str:
    """A POSIX shell command that writes `content` to `path`, creating its directory."""
    parent = posixpath.dirname(path) or "."
    target, text = shlex.quote(path), shlex.quote(content)
    return f"mkdir -p {shlex.quote(parent)} && printf '%s' {text} > {target}"


def add_file_patch(path: str, content: str) -> str:
    """An apply_patch envelope that adds `path` with `content` (ending in a newline)."""
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"


def decide(api: Api, body: Mapping[str, Any], script: Script) -> Reply:
    """The scripted answer to one request of either API."""
    tools = body.get("tools") or []
    if api == "openai":
        answered = _openai_tool_answered(body.get("input"))
        has_tools = bool(tools) or _has_additional_tools(body.get("input"))
    else:
        answered = _anthropic_tool_answered(body.get("messages"))
        has_tools = bool(tools)
    if script.kind == "text" or not has_tools or (answered and script.kind == "edit"):
        return Text(script.answer)
    if api == "openai":
        return openai_tool_call(body, script)
    return anthropic_tool_call(body, script)


def _openai_tool_answered(items: object) -> bool:
    """Whether a tool output follows the last user message of a Responses `input`."""
    if not isinstance(items, list):
        return False
    seen_output = False
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") in OUTPUT_TYPES:
            seen_output = True
        elif item.get("role") == "user":
            seen_output = False
    return seen_output


def _has_additional_tools(items: object) -> bool:
    """Whether Codex's "code mode" put its tools in an input item instead of `tools`."""
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") == "additional_tools" for i in items
    )


def _anthropic_tool_answered(messages: object) -> bool:
    """Whether the last message is a user turn carrying a tool_result."""
    if not isinstance(messages, list) or not messages:
        return False
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return False
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def openai_tools(body: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Offered tool name → (type, namespace), namespaces flattened, code mode's included."""
    found: dict[str, tuple[str, str | None]] = {}
    offered = list(body.get("tools") or [])
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            offered += item.get("tools") or []
    for tool in _iter_tools(offered, None):
        name, kind, namespace = tool
        found.setdefault(name, (kind, namespace))
    return found


def _iter_tools(
    tools: Iterable[Any], namespace: str | None
) -> Iterable[tuple[str, str, str | None]]:
    """(name, type, namespace) of each tool, descending into namespaces."""
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", "function"))
        name = tool.get("name")
        if kind == "namespace" and isinstance(tool.get("tools"), list):
            yield from _iter_tools(tool["tools"], str(name))
        elif isinstance(name, str):
            yield name, kind, namespace


def openai_tool_call(body: Mapping[str, Any], script: Script) -> ToolCall:
    """The edit as a call of the best shell-like tool Codex offered (or apply_patch)."""
    offered = openai_tools(body)
    command = script.shell_command()
    for name in OPENAI_SHELL_TOOLS:
        if name not in offered:
            continue
        kind, namespace = offered[name]
        return ToolCall(name, json.dumps(_shell_arguments(name, command)), False, namespace)
    if "apply_patch" in offered:
        kind, namespace = offered["apply_patch"]
        patch = add_file_patch(script.path, script.content)
        if kind == "custom":
            return ToolCall("apply_patch", patch, True, namespace)
        return ToolCall("apply_patch", json.dumps({"input": patch}), False, namespace)
    if "exec" in offered:
        # Code mode: one JavaScript tool that reaches the others through `tools.*`.
        source = f"await tools.exec_command({json.dumps({'cmd': command})});"
        kind, namespace = offered["exec"]
        arguments = source if kind == "custom" else json.dumps({"code": source})
        return ToolCall("exec", arguments, kind == "custom", namespace)
    raise ValueError(f"no tool to edit a file with among {sorted(offered)}")


def _shell_arguments(name: str, command: str) -> dict[str, Any]:
    """Arguments in the shape each of Codex's shell tools takes."""
    if name == "shell":
        return {"command": ["bash", "-lc", command]}
    if name == "shell_command":
        return {"command": command}
    return {"cmd": command}


def anthropic_tool_call(body: Mapping[str, Any], script: Script) -> ToolCall:
    """The edit as Claude Code's Bash tool, or its Write tool with an absolute path."""
    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    if "Bash" in names:
        command = script.shell_command()
        arguments = {"command": command, "description": "Write the scripted file"}
        return ToolCall("Bash", json.dumps(arguments))
    if "Write" in names:
        path = posixpath.join(_claude_workdir(body), script.path)
        return ToolCall("Write", json.dumps({"file_path": path, "content": script.content}))
    raise ValueError(f"no tool to edit a file with among {sorted(map(str, names))}")


def _claude_workdir(body: Mapping[str, Any]) -> str:
    """The working directory Claude Code states in its prompt (default /workspace)."""
    for text in _strings(body):
        match = CLAUDE_WORKDIR_RE.search(text)
        if match:
            return match.group(1)
    return "/workspace"


def _strings(value: object) -> Iterable[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
