"""Which agent and model run a task: the config's, or one the requester picked and may use."""

from __future__ import annotations

from dataclasses import dataclass

from config.repo_config import AgentConfig


@dataclass(frozen=True)
class AgentChoice:
    """The agent of one task: a preset and model, or a command (or nothing at all)."""

    preset: str | None = None
    model: str | None = None
    command: str | None = None

    def describe(self) -> str:
        """`codex (gpt-5-codex)`, `the agent command`, or `no agent`."""
        if self.preset is not None:
            return f"{self.preset} ({self.model})" if self.model else self.preset
        return "the agent command" if self.command else "no agent"


class AgentNotAllowedError(ValueError):
    """The requester asked for an agent or model the repository does not allow."""


def default_choice(agent: AgentConfig) -> AgentChoice:
    """What runs when the requester picks nothing."""
    return AgentChoice(agent.preset, agent.model, agent.command)


def allowed(agent: AgentConfig) -> list[str]:
    """What a requester may pick, as `preset` or `preset:model` (the default first)."""
    names = [agent.preset + (f":{agent.model}" if agent.model else "")] if agent.preset else []
    return names + [name for name in agent.allow if name not in names]


def choose_agent(agent: AgentConfig, preset: str | None, model: str | None) -> AgentChoice:
    """The agent a request runs with, or `AgentNotAllowedError` saying what is allowed."""
    if preset is None and model is None:
        return default_choice(agent)
    preset = preset or agent.preset
    if preset is None:
        raise AgentNotAllowedError(
            "this repository runs an agent command, so no model can be picked"
        )
    if preset == agent.preset and model in (None, agent.model):
        return AgentChoice(preset, agent.model)
    if preset in agent.allow or (model is not None and f"{preset}:{model}" in agent.allow):
        return AgentChoice(preset, model)
    pinned = [name for name in agent.allow if name.startswith(f"{preset}:")]
    if model is None and len(pinned) == 1:
        return AgentChoice(preset, pinned[0].partition(":")[2])
    asked = preset + (f" with model {model}" if model else "")
    choices = ", ".join(f"`{name}`" for name in allowed(agent)) or "nothing but the default"
    raise AgentNotAllowedError(
        f"{asked} is not allowed here; this repository allows {choices} "
        "(`agent.allow` in `.github/gantry.yml`)"
    )
