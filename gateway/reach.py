"""Requests that would have the provider itself connect to a host the agent names.

Both agent CLIs run their MCP servers and web fetches on their own side, where the task's
network policy holds. A request that hands the provider an MCP server's URL (Anthropic's
`mcp_servers`, an OpenAI `mcp` tool) or asks it to fetch pages (Anthropic's `web_fetch` server
tool) would make the provider reach that host from outside the sandbox, carrying whatever the
agent put in the request: under `network.agent: off` the one way out. Refused. Pure.

Web search stays (Claude Code's WebSearch is Anthropic's server-side `web_search`): it sends a
query to the provider's search, not to a host the agent chooses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Tool types (or their prefixes, for dated versions such as `web_fetch_20250910`).
REACHING_TOOLS = ("mcp", "web_fetch")


def _reaching_tool(tool: object) -> str | None:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    if isinstance(kind, str) and kind.startswith(REACHING_TOOLS):
        return kind
    return None


def provider_reach(body: Mapping[str, Any]) -> str | None:
    """Why this request would have the provider connect out for the agent, or None."""
    if body.get("mcp_servers"):
        return "`mcp_servers` (the provider would connect to them)"
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        kind = _reaching_tool(tool)
        if kind is not None:
            return f"a `{kind}` tool (the provider would connect to the host it names)"
    return None
