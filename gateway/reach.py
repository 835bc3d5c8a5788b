"""Provider-side tools: what a request may have the provider do for the agent, by the task's
`network.agent` policy. Pure.

Both agent CLIs run their MCP servers, fetches and commands on their own side, where the task's
network policy holds. The providers also offer to do these things themselves, outside the
task's sandbox:

- connect to a host the agent names (Anthropic's `mcp_servers` and `mcp_toolset`, OpenAI's
  `mcp` tool, Anthropic's `web_fetch_*`): refused under every policy;
- search the vector stores of Gantry's provider account (OpenAI's `file_search`): other tasks'
  or the operator's data, refused under every policy;
- search the web (OpenAI's `web_search*`, Anthropic's `web_search_*`, Chat Completions'
  `web_search_options`) or run the agent's code on the provider's machines (OpenAI's
  `code_interpreter`, Anthropic's `code_execution_*`): allowed under `limited` and `full`,
  not under `off`.

Codex offers `web_search` in every request (its default), so under `off` a web-search tool
offered beside others is dropped from the request, not refused: a refusal would end every
Codex run. A request whose only tools are web searches exists to search (Claude Code's
WebSearch sends one such request per search) and is refused, saying why. Tools are
found wherever the APIs read them: the body's `tools`, a Responses `additional_tools` input
item, and a `namespace` tool's own `tools`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.repo_config import NetworkMode

# Tool types, or their prefixes for dated versions (`web_fetch_20250910`, `mcp_toolset`).
CONNECTING = ("mcp", "web_fetch")
ACCOUNT_DATA = ("file_search",)
SEARCHING = ("web_search",)
RUNNING_CODE = ("code_interpreter", "code_execution")
CONNECTS = "the provider would connect to the host the agent names"
READS_ACCOUNT = "it searches the vector stores of Gantry's provider account, not the task's data"
UNDER_OFF = "under `network.agent: off` (the provider would {what} for the agent)"
WHAT = {SEARCHING: "search the web", RUNNING_CODE: "run code outside the task's sandbox"}


@dataclass(frozen=True)
class Reach:
    """What the policy makes of a request: refused (why), or sent with `dropped` tools removed
    (`body` is then the request to send instead)."""

    refused: str | None = None
    dropped: tuple[str, ...] = ()
    body: dict[str, Any] | None = field(default=None, repr=False)


def screen(body: dict[str, Any], network: NetworkMode) -> Reach:
    """Check a parsed request body against the task's agent network policy."""
    if body.get("mcp_servers"):
        return Reach(refused=f"`mcp_servers` ({CONNECTS})")
    if network == "off" and body.get("web_search_options") is not None:
        return Reach(refused="`web_search_options` " + UNDER_OFF.format(what=WHAT[SEARCHING]))
    kinds = [_kind(tool) for group in _tool_lists(body) for tool in _leaves(group)]
    for kind in kinds:
        refused = _refused(kind, network)
        if refused is not None:
            return Reach(refused=refused)
    if network != "off" or not any(_is(kind, SEARCHING) for kind in kinds):
        return Reach()
    if all(_is(kind, SEARCHING) for kind in kinds):
        searching = next(kind for kind in kinds if _is(kind, SEARCHING))
        return Reach(refused=f"a `{searching}` tool " + UNDER_OFF.format(what=WHAT[SEARCHING]))
    dropped = tuple(kind for kind in kinds if _is(kind, SEARCHING))
    return Reach(dropped=dropped, body=_without(body, lambda kind: _is(kind, SEARCHING)))


def _refused(kind: str, network: NetworkMode) -> str | None:
    if _is(kind, CONNECTING):
        return f"a `{kind}` tool ({CONNECTS})"
    if _is(kind, ACCOUNT_DATA):
        return f"a `{kind}` tool ({READS_ACCOUNT})"
    if network == "off" and _is(kind, RUNNING_CODE):
        return f"a `{kind}` tool " + UNDER_OFF.format(what=WHAT[RUNNING_CODE])
    return None


def _is(kind: str, prefixes: tuple[str, ...]) -> bool:
    return kind.startswith(prefixes)


def _kind(tool: object) -> str:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    return kind if isinstance(kind, str) else ""


def _tool_lists(body: Mapping[str, Any]) -> list[list[Any]]:
    """Every top-level tool list: the body's, and each `additional_tools` input item's."""
    lists = [body.get("tools")]
    items = body.get("input")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("type") == "additional_tools":
            lists.append(item.get("tools"))
    return [tools for tools in lists if isinstance(tools, list)]


def _leaves(tools: list[Any]) -> list[Any]:
    """The tools of a list, with each namespace's tools in its place."""
    leaves = []
    for tool in tools:
        inner = tool.get("tools") if _kind(tool) == "namespace" else None
        leaves += _leaves(inner) if isinstance(inner, list) else [tool]
    return leaves


def _without(body: dict[str, Any], drop: Callable[[str], bool]) -> dict[str, Any]:
    """A copy of `body` whose tool lists (wherever they are) leave out the tools `drop` names."""
    copy = dict(body)
    if isinstance(body.get("tools"), list):
        copy["tools"] = _kept(body["tools"], drop)
    items = body.get("input")
    if isinstance(items, list):
        copy["input"] = [
            {**item, "tools": _kept(item["tools"], drop)}
            if isinstance(item, Mapping)
            and item.get("type") == "additional_tools"
            and isinstance(item.get("tools"), list)
            else item
            for item in items
        ]
    return copy


def _kept(tools: list[Any], drop: Callable[[str], bool]) -> list[Any]:
    kept = []
    for tool in tools:
        inner = tool.get("tools") if _kind(tool) == "namespace" else None
        if isinstance(inner, list):
            kept.append({**tool, "tools": _kept(inner, drop)})
        elif not drop(_kind(tool)):
            kept.append(tool)
    return kept
