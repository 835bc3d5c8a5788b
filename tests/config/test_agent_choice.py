"""Which agent a request runs with: the default, or an allowed pick; anything else refused."""

from __future__ import annotations

import pytest

from config.agent_choice import AgentChoice, AgentNotAllowedError, allowed, choose_agent
from config.repo_config import AgentConfig

CONFIG = AgentConfig(preset="codex", model="gpt-5-codex", allow=("claude", "codex:gpt-5-mini"))


def test_nothing_picked_is_the_default() -> None:
    assert choose_agent(CONFIG, None, None) == AgentChoice("codex", "gpt-5-codex")


def test_an_allowed_preset_with_any_model() -> None:
    assert choose_agent(CONFIG, "claude", "claude-x") == AgentChoice("claude", "claude-x")
    assert choose_agent(CONFIG, "claude", None) == AgentChoice("claude", None)


def test_a_model_alone_applies_to_the_default_preset() -> None:
    assert choose_agent(CONFIG, None, "gpt-5-mini") == AgentChoice("codex", "gpt-5-mini")
    assert choose_agent(CONFIG, None, "gpt-5-codex") == AgentChoice("codex", "gpt-5-codex")


@pytest.mark.parametrize(
    ("preset", "model"), [("codex", "gpt-4o"), (None, "o3"), ("aider", None), ("claude2", None)]
)
def test_anything_not_allowed_is_refused_with_what_is(
    preset: str | None, model: str | None
) -> None:
    with pytest.raises(AgentNotAllowedError) as caught:
        choose_agent(CONFIG, preset, model)
    assert "`codex:gpt-5-codex`, `claude`, `codex:gpt-5-mini`" in str(caught.value)


def test_a_single_pinned_model_is_taken_when_none_is_named() -> None:
    config = AgentConfig(preset="codex", allow=("claude:claude-sonnet-4-5",))
    assert choose_agent(config, "claude", None) == AgentChoice("claude", "claude-sonnet-4-5")


def test_a_command_agent_allows_no_model_pick() -> None:
    config = AgentConfig(command="./agent.sh")
    assert choose_agent(config, None, None) == AgentChoice(command="./agent.sh")
    with pytest.raises(AgentNotAllowedError, match="agent command"):
        choose_agent(config, None, "gpt-5")
    assert allowed(config) == []
