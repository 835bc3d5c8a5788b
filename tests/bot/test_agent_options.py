"""`--agent` and `--model` before a request pick the agent; elsewhere they are request text."""

from __future__ import annotations

from bot.commands import Kind, help_text, parse_command


def test_options_before_a_request_are_taken() -> None:
    command = parse_command("@gantry --agent claude --model claude-sonnet-4-5 fix it", "gantry")
    assert command is not None
    assert (command.kind, command.text) == (Kind.REQUEST, "fix it")
    assert (command.agent, command.model) == ("claude", "claude-sonnet-4-5")


def test_equals_form_and_exec() -> None:
    command = parse_command("@gantry --model=gpt-5-mini exec make fmt", "gantry")
    assert command is not None
    assert (command.kind, command.text, command.model) == (Kind.EXEC, "make fmt", "gpt-5-mini")


def test_options_inside_the_request_stay_text() -> None:
    command = parse_command("@gantry add a --agent flag to the CLI", "gantry")
    assert command is not None
    assert command.text == "add a --agent flag to the CLI"
    assert command.agent is None


def test_options_alone_or_before_a_subcommand_pick_nothing() -> None:
    alone = parse_command("@gantry --agent codex", "gantry")
    status = parse_command("@gantry --agent codex status", "gantry")
    assert alone is not None
    assert alone.kind is Kind.HELP
    assert status is not None
    assert (status.kind, status.agent) == (Kind.STATUS, None)


def test_help_shows_the_options() -> None:
    assert "--agent claude --model" in help_text("gantry")
