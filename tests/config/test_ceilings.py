"""The operator's ceilings: capped numbers, narrowed networks, refused agents and images."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from config.ceilings import agent_allowed, apply_ceilings
from config.repo_config import RepoConfig
from config.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def config(**values: Any) -> RepoConfig:
    return RepoConfig.model_validate(values)


def test_numbers_above_their_ceilings_are_capped_and_said_so() -> None:
    ceilings = settings(
        max_cpus=2, max_memory="2g", max_pids=256, max_timeout_agent="20m", max_agent_tokens=1000
    )
    asked = config(
        resources={"cpus": 8, "memory": "16g", "pids": 128},
        timeouts={"agent": "2h", "setup": "5m"},
        agent={"budget": {"tokens": 5000, "requests": 10}},
    )
    capped, cappings, refusals = apply_ceilings(asked, ceilings)
    assert capped.resources.cpus == 2
    assert capped.resources.memory == 2 * 1024**3
    assert capped.resources.pids == 128  # below its ceiling: untouched
    assert capped.timeouts.agent == timedelta(minutes=20)
    assert capped.timeouts.setup == timedelta(minutes=5)
    assert (capped.agent.budget.tokens, capped.agent.budget.requests) == (1000, 10)
    assert [str(c) for c in cappings] == [
        "resources.cpus: 8 capped at 2 by the operator (GANTRY_MAX_CPUS)",
        "resources.memory: 16g capped at 2g by the operator (GANTRY_MAX_MEMORY)",
        "timeouts.agent: 2h capped at 20m by the operator (GANTRY_MAX_TIMEOUT_AGENT)",
        "agent.budget.tokens: 5000 capped at 1000 by the operator (GANTRY_MAX_AGENT_TOKENS)",
    ]
    assert refusals == []


def test_the_budget_time_ceiling_is_the_existing_max_agent_time_in_seconds() -> None:
    capped, [capping], _ = apply_ceilings(
        config(agent={"budget": {"time": "1h"}}), settings(max_agent_time=600)
    )
    assert capped.agent.budget.time == timedelta(minutes=10)
    assert capping.reason == "1h is above GANTRY_MAX_AGENT_TIME=10m"


@pytest.mark.parametrize(
    ("ceiling", "setup", "agent"),
    [("full", "full", "limited"), ("limited", "limited", "limited"), ("off", "off", "off")],
)
def test_network_is_never_wider_than_max_network(ceiling: str, setup: str, agent: str) -> None:
    asked = config(network={"setup": "full", "agent": "limited", "allow": ["pypi.org"]})
    capped, _, _ = apply_ceilings(asked, settings(max_network=ceiling))
    assert (capped.network.setup, capped.network.agent) == (setup, agent)


def test_no_ceilings_change_nothing() -> None:
    asked = config(resources={"cpus": 64}, image="anything:1", agent={"command": "x"})
    assert apply_ceilings(asked, settings()) == (asked, [], [])


def test_an_image_the_operator_does_not_allow_is_refused_but_the_default_image_never() -> None:
    ceilings = settings(allowed_images="ghcr.io/acme/*, docker.io/library/python:3.*")
    for allowed in (
        "ghcr.io/acme/dev:1",
        "docker.io/library/python:3.12",
        "gantry-universal:latest",
    ):
        assert apply_ceilings(config(image=allowed), ceilings)[2] == []
    _, _, [refusal] = apply_ceilings(config(image="evil.example/miner:1"), ceilings)
    assert refusal.path == "image"
    assert refusal.message.startswith("evil.example/miner:1 is not allowed by the operator")
    assert "GANTRY_ALLOWED_IMAGES" in refusal.message


def test_service_images_answer_to_the_same_allow_list() -> None:
    ceilings = settings(allowed_images="ghcr.io/acme/*")
    services = {"db": {"image": "ghcr.io/acme/postgres:16"}, "miner": {"image": "evil/miner:1"}}
    _, _, [refusal] = apply_ceilings(config(services=services), ceilings)
    assert refusal.path == "services.miner.image"
    assert refusal.message.startswith("evil/miner:1 is not allowed by the operator")


def test_agents_the_operator_does_not_allow_are_refused_and_dropped_from_allow() -> None:
    ceilings = settings(allowed_agents="codex:gpt-5*,claude")
    capped, [capping], refusals = apply_ceilings(
        config(agent={"preset": "codex", "model": "gpt-5-codex", "allow": ["claude", "codex"]}),
        ceilings,
    )
    assert refusals == []
    assert capped.agent.allow == ("claude",)  # plain `codex` would allow any model
    assert capping.reason == "codex dropped: not in GANTRY_ALLOWED_AGENTS=codex:gpt-5*,claude"
    _, _, [refusal] = apply_ceilings(config(agent={"preset": "codex", "model": "gpt-4o"}), ceilings)
    assert (refusal.path, refusal.message.split(" (")[0]) == (
        "agent.model",
        "codex:gpt-4o is not allowed by the operator",
    )
    _, _, [refusal] = apply_ceilings(config(agent={"command": "./agent"}), ceilings)
    assert refusal.path == "agent.command"
    allowed = settings(allowed_agents="codex,command")
    assert apply_ceilings(config(agent={"command": "./agent"}), allowed)[2] == []


def test_the_servers_own_default_agent_is_always_allowed() -> None:
    ceilings = settings(allowed_agents="claude", agent_preset="codex", agent_model="gpt-5")
    served = config(agent={"preset": "codex", "model": "gpt-5"})
    assert apply_ceilings(served, ceilings)[2] == []
    command = settings(allowed_agents="claude", agent_command="run-agent")
    assert apply_ceilings(config(agent={"command": "run-agent"}), command)[2] == []


@pytest.mark.parametrize(
    ("preset", "model", "allowed"),
    [
        ("codex", None, True),
        ("codex", "gpt-5", True),
        ("claude", "claude-opus-4", True),
        ("claude", "claude-haiku-3", False),
        ("claude", None, False),
        ("other", None, False),
    ],
)
def test_agent_allowed(preset: str, model: str | None, allowed: bool) -> None:
    assert agent_allowed(("codex", "claude:claude-opus-*"), preset, model) is allowed
