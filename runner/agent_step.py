"""The agent step: what runs, with which variables, and what its model calls came to. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from config.agent_choice import AgentChoice, choose_agent
from config.errors import GantryError
from config.repo_config import RepoConfig
from gateway import Provider, TaskUsage
from runner import presets
from runner.sandbox import ExecResult
from runner.task import Task

# A repository's own provider keys, under these names in the server's secrets file.
KEY_SECRETS: Mapping[str, Provider] = {
    "OPENAI_API_KEY": "openai",
    "GANTRY_OPENAI_API_KEY": "openai",
    "ANTHROPIC_API_KEY": "anthropic",
    "GANTRY_ANTHROPIC_API_KEY": "anthropic",
}
MAX_SESSION_EXCHANGES = 200


class NoGatewayError(GantryError):
    """A preset was asked for where no model gateway runs."""


@dataclass(frozen=True)
class AgentStep:
    """The agent's shell command, its extra variables, and a label for reports."""

    command: str
    env: Mapping[str, str]
    label: str


def agent_choice(task: Task, config: RepoConfig, server_command: str | None) -> AgentChoice:
    """`exec`'s command, the requester's allowed pick, the config's agent or the server's."""
    if task.kind == "exec":
        return AgentChoice(command=task.request)
    choice = choose_agent(config.agent, task.agent, task.model)
    if choice.preset is None and choice.command is None and server_command:
        return AgentChoice(command=server_command)
    return choice


def build_step(
    choice: AgentChoice, gateway_url: str | None, token: str | None, instructions: str = ""
) -> AgentStep:
    """The command line and variables of an agent, pointed at the gateway when there is one;
    a preset also gets the mode's instructions (a command reads `GANTRY_MODE` itself)."""
    if choice.preset is not None:
        if gateway_url is None or token is None:
            raise NoGatewayError(
                f"the {choice.preset} preset needs the model gateway, which this executor lacks"
            )
        run = presets.invocation(choice.preset, gateway_url, token, choice.model, instructions)
        return AgentStep(run.command, dict(run.env), choice.describe())
    if choice.command is None:
        raise GantryError("no agent is configured")
    env = presets.provider_env(gateway_url, token) if gateway_url and token else {}
    return AgentStep(choice.command, env, "agent command")


def provider_keys(available: Mapping[str, SecretStr]) -> dict[Provider, str]:
    """A repository's own provider keys from the secrets it may use (none: the server's)."""
    keys: dict[Provider, str] = {}
    for name, provider in KEY_SECRETS.items():
        if name in available and provider not in keys:
            keys[provider] = available[name].get_secret_value()
    return keys


def usage_line(label: str, usage: TaskUsage) -> str:
    """One line for the PR body and the progress comment."""
    return f"🤖 {label} · {usage.summary()}"


def time_budget(budget_s: float, timeout_s: float) -> float | None:
    """The time budget when it, not the agent's timeout, is what stops the agent."""
    return budget_s if budget_s < timeout_s else None


def failure_reason(
    usage: TaskUsage | None, result: ExecResult, time_budget_s: float | None = None
) -> str | None:
    """Why the agent phase failed, in the order that explains it best (None: it did not).
    `time_budget_s`: the time budget, when the agent was stopped at it (see `time_budget`)."""
    if usage is not None and usage.budget_exhausted is not None:
        spent = usage.budget_message or f"the {usage.budget_exhausted} budget ran out"
        return f"the agent's {usage.budget_exhausted} budget ran out ({spent})"
    if result.timed_out and time_budget_s is not None:
        return (
            f"the agent's time budget ran out ({result.seconds:,.0f} s of {time_budget_s:,.0f} s)"
        )
    if result.ok:
        return None
    if usage is not None and usage.provider_error:
        return f"the model provider failed: {usage.provider_error} (the agent {result.describe()})"
    return f"the agent {result.describe()}"


def usage_record(label: str, usage: TaskUsage) -> dict[str, Any]:
    """What the task page shows: the numbers and the redacted session, as plain data."""
    record = dataclasses.asdict(usage)
    record["exchanges"] = record["exchanges"][-MAX_SESSION_EXCHANGES:]
    record["agent"] = label
    record["line"] = usage_line(label, usage)
    return record
