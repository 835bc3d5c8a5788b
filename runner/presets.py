"""Agent presets: the pinned CLIs' non-interactive command lines and environments.

Pure: given the gateway URL a container reaches and the task's token, a preset says which
shell command runs the agent (prompt from `$GANTRY_PROMPT`, stdin closed, never stopping to
ask) and which variables it needs. Both presets get the OpenAI and Anthropic variables, so
tools the agent starts reach the gateway too.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from config.errors import GantryError

CODEX_PACKAGE = "@openai/codex"
CODEX_VERSION = "0.169.0"
CLAUDE_PACKAGE = "@anthropic-ai/claude-code"
CLAUDE_VERSION = "2.1.328"
# Where the gateway forwards each provider's API (see the gateway's routes).
OPENAI_PREFIX = "/openai/v1"
ANTHROPIC_PREFIX = "/anthropic"
CODEX_PROVIDER = "gantry"
# A few retries only: a refused budget or a dead upstream should end the run, not stall it.
MAX_RETRIES = 2
# Off: analytics and the plugin/app catalogues (they call hosts that a task cannot reach).
CODEX_DISABLED_FEATURES = ("plugins", "apps", "remote_plugin")
CLAUDE_ALLOWED_TOOLS = ("Bash", "Edit", "Write", "NotebookEdit")
# A mode's instructions (ask, plan, review; see runner/modes.py), in a variable of their own so
# that `GANTRY_PROMPT` stays the request: Codex reads them before the request, Claude Code as
# an addition to its system prompt.
INSTRUCTIONS_VAR = "GANTRY_INSTRUCTIONS"


class UnknownPresetError(GantryError, ValueError):
    """A preset name that no preset answers to."""


@dataclass(frozen=True)
class AgentInvocation:
    """How to run an agent: a shell command line (for `bash -c`) and its environment."""

    command: str
    env: Mapping[str, str]


def provider_env(gateway_url: str, token: str) -> dict[str, str]:
    """The providers' usual variables, pointing at the gateway with the task's token."""
    base = gateway_url.rstrip("/")
    return {
        "OPENAI_BASE_URL": base + OPENAI_PREFIX,
        "OPENAI_API_KEY": token,
        "ANTHROPIC_BASE_URL": base + ANTHROPIC_PREFIX,
        "ANTHROPIC_API_KEY": token,
    }


def codex_provider(gateway_url: str) -> str:
    """Codex's custom provider as a TOML inline table (`OPENAI_BASE_URL` is ignored by exec)."""
    base_url = gateway_url.rstrip("/") + OPENAI_PREFIX
    # json.dumps of ASCII text is a valid TOML basic string.
    fields = {
        "name": json.dumps(CODEX_PROVIDER),
        "base_url": json.dumps(base_url),
        "env_key": '"OPENAI_API_KEY"',
        "wire_api": '"responses"',
        "supports_websockets": "false",
        "request_max_retries": str(MAX_RETRIES),
        "stream_max_retries": str(MAX_RETRIES),
    }
    return "{" + ", ".join(f"{key}={value}" for key, value in fields.items()) + "}"


def with_instructions(env: dict[str, str], instructions: str) -> dict[str, str]:
    return env | {INSTRUCTIONS_VAR: instructions} if instructions else env


def codex(
    gateway_url: str, token: str, model: str | None = None, instructions: str = ""
) -> AgentInvocation:
    """`codex exec`, unsandboxed (the container is the sandbox), on the gateway's provider."""
    args = [
        "codex",
        "exec",
        "--dangerously-bypass-approvals-and-sandbox",
        "--skip-git-repo-check",
        "--color",
        "never",
        "-c",
        f"model_provider={CODEX_PROVIDER}",
        "-c",
        f"model_providers.{CODEX_PROVIDER}={codex_provider(gateway_url)}",
        "-c",
        "analytics.enabled=false",
    ]
    for feature in CODEX_DISABLED_FEATURES:
        args += ["--disable", feature]
    if model:
        args += ["-m", model]
    # A fresh CODEX_HOME per run: nothing read from or left in ~/.codex. Not under /tmp: there
    # Codex refuses to create its helper commands (apply_patch) and says so on every run.
    prompt = f'"${INSTRUCTIONS_VAR}\n\n$GANTRY_PROMPT"' if instructions else '"$GANTRY_PROMPT"'
    command = (
        'CODEX_HOME="$(mktemp -d /var/tmp/codex-home.XXXXXX)" && export CODEX_HOME && exec '
        + shlex.join(args)
        + f" -- {prompt} </dev/null"
    )
    env = with_instructions(provider_env(gateway_url, token), instructions)
    return AgentInvocation(command, env)


def claude(
    gateway_url: str, token: str, model: str | None = None, instructions: str = ""
) -> AgentInvocation:
    """`claude -p`, accepting edits and running the allowed tools without asking (works as root)."""
    args = ["claude", "-p", "--permission-mode", "acceptEdits"]
    args += ["--allowedTools", ",".join(CLAUDE_ALLOWED_TOOLS)]
    if model:
        args += ["--model", model]
    extra = f' --append-system-prompt "${INSTRUCTIONS_VAR}"' if instructions else ""
    command = "exec " + shlex.join(args) + extra + ' -- "$GANTRY_PROMPT" </dev/null'
    env = provider_env(gateway_url, token) | {
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(MAX_RETRIES),
        "DISABLE_AUTOUPDATER": "1",
    }
    return AgentInvocation(command, with_instructions(env, instructions))


Preset = Callable[[str, str, str | None, str], AgentInvocation]
PRESETS: Mapping[str, Preset] = MappingProxyType({"codex": codex, "claude": claude})
PACKAGES: Mapping[str, str] = MappingProxyType(
    {"codex": f"{CODEX_PACKAGE}@{CODEX_VERSION}", "claude": f"{CLAUDE_PACKAGE}@{CLAUDE_VERSION}"}
)


def invocation(
    preset: str, gateway_url: str, token: str, model: str | None = None, instructions: str = ""
) -> AgentInvocation:
    """The invocation of a preset by name."""
    try:
        build = PRESETS[preset]
    except KeyError:
        raise UnknownPresetError(
            f"unknown agent preset {preset!r}; one of {', '.join(PRESETS)}"
        ) from None
    return build(gateway_url, token, model, instructions)
