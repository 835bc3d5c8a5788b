"""The agent step's pure decisions: what runs, with which variables, and why it failed."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import SecretStr

from config.agent_choice import AgentChoice, AgentNotAllowedError
from config.repo_config import parse_repo_config
from gateway import TaskUsage
from runner.agent_step import (
    NoGatewayError,
    agent_choice,
    build_step,
    failure_reason,
    provider_keys,
    time_budget,
)
from runner.sandbox import ExecResult
from runner.task import Task, TaskState
from tests.test_task_store import TASK

GW, TOKEN = "http://10.9.0.2:3129", "gantry-token"
STORED = {"id": 1, "delivery_id": "d", "created_at": 0.0, "updated_at": 0.0}


def task(**changes: object) -> Task:
    """A stored task from the store tests' request, with `changes`."""
    values = {**dataclasses.asdict(TASK), **STORED, "state": TaskState.QUEUED, **changes}
    return Task(**values)


def test_exec_runs_its_command_whatever_the_config_says() -> None:
    config = parse_repo_config("agent: {preset: codex}").config
    assert agent_choice(task(kind="exec", request="make fmt"), config, None) == AgentChoice(
        command="make fmt"
    )


def test_the_pick_the_config_and_the_server_default_in_that_order() -> None:
    config = parse_repo_config("agent: {preset: codex, allow: [claude]}").config
    picked = agent_choice(task(agent="claude"), config, "server-agent")
    assert picked == AgentChoice("claude")
    assert agent_choice(task(), config, "server-agent") == AgentChoice("codex")
    bare = parse_repo_config(None).config
    assert agent_choice(task(), bare, "server-agent") == AgentChoice(command="server-agent")
    with pytest.raises(AgentNotAllowedError):
        agent_choice(task(agent="aider"), config, None)


def test_a_preset_needs_the_gateway_and_a_command_gets_its_variables() -> None:
    with pytest.raises(NoGatewayError):
        build_step(AgentChoice("codex"), None, None)
    step = build_step(AgentChoice(command="./agent"), GW, TOKEN)
    assert step.env["OPENAI_BASE_URL"] == f"{GW}/openai/v1"
    assert step.env["ANTHROPIC_API_KEY"] == TOKEN
    assert build_step(AgentChoice(command="./agent"), None, None).env == {}
    codex = build_step(AgentChoice("codex", "gpt-5-codex"), GW, TOKEN)
    assert "-m gpt-5-codex" in codex.command
    assert codex.label == "codex (gpt-5-codex)"


def test_a_repositorys_own_keys_come_from_its_secrets() -> None:
    keys = provider_keys({"OPENAI_API_KEY": SecretStr("sk-1"), "PYPI": SecretStr("x")})
    assert keys == {"openai": "sk-1"}
    assert provider_keys({}) == {}
    # The server's own setting names work as secret names too, for both providers.
    gantry_named = {
        "GANTRY_OPENAI_API_KEY": SecretStr("sk-2"),
        "GANTRY_ANTHROPIC_API_KEY": SecretStr("sk-ant-2"),
    }
    assert provider_keys(gantry_named) == {"openai": "sk-2", "anthropic": "sk-ant-2"}
    assert provider_keys({"ANTHROPIC_API_KEY": SecretStr("sk-ant-1")}) == {"anthropic": "sk-ant-1"}
    # Both names for one provider: the plain one wins, whatever the order.
    both = {"GANTRY_ANTHROPIC_API_KEY": SecretStr("b"), "ANTHROPIC_API_KEY": SecretStr("a")}
    assert provider_keys(both) == {"anthropic": "a"}


def test_failure_reasons_say_the_budget_then_the_provider_then_the_exit() -> None:
    failed, ok = ExecResult(1, False, False, 1.0), ExecResult(0, False, False, 1.0)
    spent = TaskUsage("1", requests=4, budget_exhausted="requests", budget_message="4 of 4")
    down = TaskUsage("1", requests=1, provider_error="upstream answered 500")
    assert failure_reason(spent, ok) == "the agent's requests budget ran out (4 of 4)"
    assert failure_reason(down, failed) == (
        "the model provider failed: upstream answered 500 (the agent exit code 1)"
    )
    assert failure_reason(None, failed) == "the agent exit code 1"
    assert failure_reason(down, ok) is None


def test_an_agent_stopped_at_its_time_budget_is_told_apart_from_its_timeout() -> None:
    stopped = ExecResult(None, True, False, 120.4)
    # A budget of 2 minutes under a 30 minute timeout: the budget stopped it.
    budget = time_budget(120.0, 1800.0)
    assert failure_reason(None, stopped, budget) == (
        "the agent's time budget ran out (120 s of 120 s)"
    )
    # A budget at or above the timeout: the timeout stopped it, and says so.
    assert failure_reason(None, stopped, time_budget(3600.0, 1800.0)) == (
        "the agent killed at its timeout after 120s"
    )
    # The gateway's own refusal, with its numbers, comes first.
    spent = TaskUsage("1", requests=2, budget_exhausted="time", budget_message="121 s of 120 s")
    assert (
        failure_reason(spent, stopped, budget) == "the agent's time budget ran out (121 s of 120 s)"
    )
    # A budget that did not stop it changes nothing.
    assert failure_reason(None, ExecResult(0, False, False, 3.0), budget) is None
    assert failure_reason(None, ExecResult(2, False, False, 3.0), budget) == "the agent exit code 2"
