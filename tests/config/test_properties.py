"""Property tests: no Markdown or YAML crashes the parsers; every config error has a location."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.agents_md import SHELL_LANGUAGES, parse_agents_md
from config.repo_config import ConfigError, RepoConfig, load_repo_config
from config.secret_store import parse_secret_store

HEADINGS = ["Setup", "Testing", "Getting started", "Lint", "Deploy", "Notes", "CI"]
LANGUAGES = [*sorted(SHELL_LANGUAGES), "python", "", "console title=x", "BASH"]
LINES = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40)
SCHEMA_KEYS = [*RepoConfig.model_fields, "agnet", "<<", "network.agent"]
SECTION_KEYS = ["setup", "agent", "allow", "methods", "command", "cpus", "memory", "pids", "ttl"]
SECTION_KEYS += ["draft", "labels", "branch_prefix", "mention", "label", "min_permission"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["off", "full", "limited", "20m", "4g", "auto", "write", "pypi.org", "GET"]),
)


def _fragment() -> st.SearchStrategy[str]:
    heading = st.builds(lambda n, h: f"{'#' * n} {h}", st.integers(1, 7), st.sampled_from(HEADINGS))
    fence = st.builds(
        lambda lang, body, tick: f"{tick}{lang}\n" + "\n".join(body) + f"\n{tick}",
        st.sampled_from(LANGUAGES),
        st.lists(st.one_of(LINES, st.sampled_from(["$ make", "a \\", "# c", "> b"])), max_size=5),
        st.sampled_from(["```", "~~~", "````", "```"]),
    )
    return st.one_of(heading, fence, LINES, st.just("> ```sh"), st.just("- ```bash"))


@given(st.text())
def test_any_text_parses_as_agents_md(text: str) -> None:
    doc = parse_agents_md(text, "x/AGENTS.md")
    line_count = text.count("\n") + text.count("\r") + 1
    for command in doc.setup + doc.checks:
        assert command.text.strip() == command.text != ""
        assert 1 <= command.origin.line <= line_count
        assert command.cwd == "x"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_fragment(), max_size=12))
def test_markdown_commands_point_at_their_line(fragments: list[str]) -> None:
    text = "\n\n".join(fragments)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    doc = parse_agents_md(text)
    for command in doc.setup + doc.checks:
        first_word = command.text.split()[0]
        assert first_word in lines[command.origin.line - 1]
        assert "\n" not in command.text


def _assert_located(error: ConfigError, text: str) -> None:
    assert error.problems
    for problem in error.problems:
        # YAML also breaks lines at \r, \x85, \u2028 and \u2029; splitlines() counts them all.
        assert 1 <= problem.line <= len(text.splitlines()) + 1
        assert problem.message
        assert str(problem).endswith(f"(line {problem.line})")


def _outcome(text: str) -> RepoConfig | ConfigError:
    """The config, or the error (returned, so tests assert outside `except`)."""
    try:
        return load_repo_config(text)
    except ConfigError as error:
        return error


@given(st.text(max_size=400))
def test_any_text_gives_a_config_or_located_errors(text: str) -> None:
    outcome = _outcome(text)
    if isinstance(outcome, ConfigError):
        _assert_located(outcome, text)


def _yaml_data() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.sampled_from([*SECTION_KEYS, "x"]), children, max_size=4),
        ),
        max_leaves=12,
    )


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SCHEMA_KEYS), _yaml_data(), max_size=6))
def test_schema_shaped_yaml_gives_a_config_or_located_errors(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False)
    outcome = _outcome(text)
    unknown = [k for k in data if k not in RepoConfig.model_fields]
    if unknown:
        assert isinstance(outcome, ConfigError)
    if isinstance(outcome, ConfigError):
        _assert_located(outcome, text)
        for key in unknown:
            assert any(p.path == key for p in outcome.problems)


@given(st.text(max_size=300))
def test_any_text_as_secrets_file_gives_a_store_or_located_errors(text: str) -> None:
    try:
        parse_secret_store(text)
    except ConfigError as error:
        problems = error
    else:
        return
    _assert_located(problems, text)
