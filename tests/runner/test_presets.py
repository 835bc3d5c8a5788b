"""Agent presets: command lines that parse as meant, reach the CLI intact, pin what images ship."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from runner.presets import (
    CLAUDE_VERSION,
    CODEX_VERSION,
    PACKAGES,
    AgentInvocation,
    UnknownPresetError,
    claude,
    codex,
    codex_provider,
    invocation,
)

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "http://10.9.0.1:7070/"
TOKEN = "gtk-abc"
PROMPT = "-fix it: 'quotes', \"double\", $HOME and `ticks`\nsecond line"
# A stand-in CLI: prints its arguments (NUL-separated), then the variables it cares about.
STUB = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done
printf 'STDIN=%s\\n' "$(cat | wc -c)"
printf 'CODEX_HOME=%s\\n' "${CODEX_HOME:-}"
[ -n "${CODEX_HOME:-}" ] && [ -d "$CODEX_HOME" ] && echo HOME_EXISTS && rmdir "$CODEX_HOME"
exit 0
"""


def words(run: AgentInvocation) -> list[str]:
    """The CLI's argv as the shell will pass it (the part after `exec`)."""
    tokens = shlex.split(run.command.split("exec ", 1)[1].split(" </dev/null")[0])
    return tokens


def run_with_stub(run: AgentInvocation, name: str, tmp_path: Path) -> tuple[list[str], str]:
    """Run the preset's command line with a stub CLI on PATH: (argv, the rest of its output)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / name).write_text(STUB)
    (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GANTRY_PROMPT": PROMPT, **run.env}
    done = subprocess.run(
        ["bash", "-c", run.command],
        env=env,
        input="not for the agent",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    *argv, rest = done.stdout.split("\0")
    return argv, rest


def test_codex_runs_exec_unsandboxed_on_the_gateway_provider() -> None:
    argv = words(codex(GATEWAY, TOKEN, "gpt-5-codex"))
    assert argv[:2] == ["codex", "exec"]
    for flag in ("--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check"):
        assert flag in argv
    assert argv[argv.index("-m") + 1] == "gpt-5-codex"
    configs = [argv[i + 1] for i, word in enumerate(argv) if word == "-c"]
    assert "model_provider=gantry" in configs
    assert "analytics.enabled=false" in configs
    disabled = {argv[i + 1] for i, word in enumerate(argv) if word == "--disable"}
    assert disabled == {"plugins", "apps", "remote_plugin"}
    assert argv[-2:] == ["--", "$GANTRY_PROMPT"]


def test_codex_provider_is_toml_with_the_gateway_and_key_variable() -> None:
    table = tomllib.loads("p = " + codex_provider(GATEWAY))["p"]
    assert table["base_url"] == "http://10.9.0.1:7070/openai/v1"
    assert table["env_key"] == "OPENAI_API_KEY"
    assert table["wire_api"] == "responses"
    assert table["supports_websockets"] is False


def test_without_a_model_no_model_flag() -> None:
    assert "-m" not in words(codex(GATEWAY, TOKEN))
    assert "--model" not in words(claude(GATEWAY, TOKEN))


def test_claude_prints_accepting_edits_with_its_tools_allowed() -> None:
    run = claude(GATEWAY, TOKEN, "claude-sonnet-4-5")
    argv = words(run)
    assert argv[:2] == ["claude", "-p"]
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert set(argv[argv.index("--allowedTools") + 1].split(",")) >= {"Bash", "Edit", "Write"}
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-5"
    assert run.env["ANTHROPIC_BASE_URL"] == "http://10.9.0.1:7070/anthropic"
    assert run.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert int(run.env["CLAUDE_CODE_MAX_RETRIES"]) <= 3


@pytest.mark.parametrize("preset", ["codex", "claude"])
def test_both_presets_point_both_providers_at_the_gateway(preset: str) -> None:
    env = invocation(preset, GATEWAY, TOKEN).env
    assert env["OPENAI_BASE_URL"] == "http://10.9.0.1:7070/openai/v1"
    assert env["ANTHROPIC_BASE_URL"] == "http://10.9.0.1:7070/anthropic"
    assert env["OPENAI_API_KEY"] == env["ANTHROPIC_API_KEY"] == TOKEN


def test_a_model_name_cannot_break_out_of_the_command() -> None:
    argv = words(codex(GATEWAY, TOKEN, "m'; touch /tmp/pwned; '"))
    assert argv[argv.index("-m") + 1] == "m'; touch /tmp/pwned; '"


@pytest.mark.parametrize("preset", ["codex", "claude"])
def test_the_prompt_reaches_the_cli_as_one_argument_and_stdin_is_closed(
    preset: str, tmp_path: Path
) -> None:
    argv, rest = run_with_stub(invocation(preset, GATEWAY, TOKEN, "m"), preset, tmp_path)
    assert argv[-2:] == ["--", PROMPT]
    assert "STDIN=0" in rest


def test_codex_gets_a_fresh_home_of_its_own(tmp_path: Path) -> None:
    _, first = run_with_stub(codex(GATEWAY, TOKEN), "codex", tmp_path / "a")
    _, second = run_with_stub(codex(GATEWAY, TOKEN), "codex", tmp_path / "b")
    homes = [re.search(r"CODEX_HOME=(\S+)", out) for out in (first, second)]
    assert all(found and found.group(1).startswith("/var/tmp/codex-home.") for found in homes)
    assert "HOME_EXISTS" in first
    assert homes[0] is not None
    assert homes[1] is not None
    assert homes[0].group(1) != homes[1].group(1)


def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(UnknownPresetError, match="aider"):
        invocation("aider", GATEWAY, TOKEN)


@pytest.mark.parametrize("dockerfile", ["images/agents/Dockerfile", "images/universal/Dockerfile"])
def test_images_install_the_pinned_versions(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert f"ARG CODEX_VERSION={CODEX_VERSION}\n" in text
    assert f"ARG CLAUDE_CODE_VERSION={CLAUDE_VERSION}\n" in text
    assert PACKAGES["codex"] == f"@openai/codex@{CODEX_VERSION}"
    assert "@openai/codex@$CODEX_VERSION" in text
    assert "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" in text
