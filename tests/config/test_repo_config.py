"""The config reader's guards and the server defaults it fills in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from config.durations import DURATION_HINT
from config.repo_config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    Problem,
    load_repo_config,
    parse_repo_config,
)
from config.settings import DEFAULT_IMAGE, Settings


def _settings(**values: object) -> Settings:
    return Settings(github_webhook_secret=SecretStr("s"), _env_file=None, **values)  # type: ignore[arg-type]


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_repo_config(text)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("text", [None, "", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_no_file_means_defaults(text: str | None) -> None:
    config = load_repo_config(text)
    assert config.image == DEFAULT_IMAGE
    assert config.network.setup == "full"
    assert config.network.agent == "off"
    assert config.timeouts.setup == timedelta(minutes=20)
    assert config.triggers.min_permission == "write"
    assert config.checks is None
    assert config.setup is None


def test_server_settings_fill_image_and_agent() -> None:
    settings = _settings(default_image="registry.local/universal:3", agent_command="aider")
    config = load_repo_config("checks: [make]\n", settings)
    assert config.image == "registry.local/universal:3"
    assert config.agent.command == "aider"


def test_the_file_wins_over_server_settings() -> None:
    settings = _settings(default_image="registry.local/universal:3", agent_command="aider")
    config = load_repo_config("image: acme/dev:1\nagent: {command: codex}\n", settings)
    assert config.image == "acme/dev:1"
    assert config.agent.command == "codex"


def test_billion_laughs_is_refused_without_expanding() -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    assert _problems("\n".join(lines)) == [
        "invalid YAML: anchors and aliases are not supported (line 1)"
    ]


def test_deep_nesting_is_refused() -> None:
    assert _problems("env: " + "[" * 200 + "]" * 200) == [
        "invalid YAML: nested deeper than 32 (line 1)"
    ]


def test_size_limit() -> None:
    text = "# " + "x" * MAX_CONFIG_BYTES + "\n"
    assert _problems(text) == ["larger than 64 KiB (line 1)"]


def test_problems_render_for_editors_and_logs() -> None:
    with pytest.raises(ConfigError) as info:
        parse_repo_config("image: ok:1\nnetwork:\n  agnet: off\n", source="repo/.github/gantry.yml")
    assert info.value.problems == (
        Problem("network.agnet", "unknown key (did you mean agent?)", 3),
    )
    assert info.value.lines() == [
        "repo/.github/gantry.yml:3: network.agnet: unknown key (did you mean agent?)"
    ]
    assert "network.agnet: unknown key (did you mean agent?) (line 3)" in str(info.value)


def test_parsed_config_knows_where_each_key_is() -> None:
    parsed = parse_repo_config("image: a:1\n\nchecks:\n  - make lint\n  - make test\n")
    assert parsed.line_of("image") == 1
    assert parsed.line_of("checks", 1) == 5
    assert parsed.line_of("setup") is None


def test_config_is_immutable() -> None:
    config = load_repo_config("image: a:1\n")
    with pytest.raises(ValueError, match="frozen"):
        config.image = "b"  # type: ignore[misc]


def test_yaml_errors_point_at_the_line_where_the_mistake_starts() -> None:
    unclosed_mapping = "image: x\nenv: {A: b\nchecks: [make]\n"
    with pytest.raises(ConfigError) as info:
        parse_repo_config(unclosed_mapping)
    [problem] = info.value.problems
    assert problem.line == 2
    assert "the { mapping } that starts on this line" in problem.message
    # A bad escape inside quotes is the escape's own line, not where the quote opened.
    bad_escape = 'image: x\nsetup: "one\n  two \\q"\n'
    with pytest.raises(ConfigError) as info:
        parse_repo_config(bad_escape)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (3, "invalid YAML: found unknown escape character 'q'")
    ]


# A number Python will not read (over 4300 digits) or a duration past what a timedelta holds
# once crashed the reader, so a mention on the repository went unanswered.
HUGE_INT = "image: x:1\nenv:\n  X: " + "9" * 5000 + "\n"
HUGE_DURATION = "image: x:1\ntimeouts:\n  setup: 99999999999999999999h\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (HUGE_INT, "env.X: a number longer than 100 characters (quote it if it is text) (line 3)"),
        (HUGE_DURATION, "timeouts.setup: must be at most 3650d (line 3)"),
        ("image: x:1\nenv:\n  X: !!int many\n", "env.X: cannot be read as an int (line 3)"),
        ("image: x:1\nenv:\n  X: !!bool maybe\n", "env.X: cannot be read as a bool (line 3)"),
        ("image: !!map x:1\n", "image: a single value cannot be a map (line 1)"),
        ("image: x:1\n\nsetup: !!null make\n", "setup: cannot be read as a null (line 3)"),
        ("image: x:1\nenv:\n  X: !!null 'rm -rf'\n", "env.X: cannot be read as a null (line 3)"),
        ("image: x:1\nenv:\n  X: !!bool yes\n", "env.X: cannot be read as a bool (line 3)"),
        ("image: x:1\nenv:\n  X: !!int 1:30\n", "env.X: cannot be read as an int (line 3)"),
        ("image: x:1\nenv:\n  X: !!float 1_0.5\n", "env.X: cannot be read as a float (line 3)"),
        (
            "image: x:1\ntimeouts:\n  setup: \u0663\u0660m\n",
            f"timeouts.setup: {DURATION_HINT} (line 3)",
        ),
    ],
    ids=[
        *("huge-int", "huge-duration", "int-tag", "bool-tag", "map-tag", "null-tag"),
        *("quoted-null-tag", "yaml-1.1-bool", "sexagesimal-int", "underscored-float"),
        "arabic-indic-duration",
    ],
)
def test_values_python_cannot_hold_are_problems_at_their_line(text: str, problem: str) -> None:
    assert _problems(text) == [problem]


def test_a_tagged_value_written_as_its_type_reads_as_it() -> None:
    text = "env:\n  A: !!int 12\n  B: !!bool false\n  C: !!str 7\n"
    assert dict(load_repo_config(text).env) == {"A": "12", "B": "false", "C": "7"}
    assert load_repo_config("image: x:1\nsetup: !!null\n").setup is None
    assert load_repo_config("image: x:1\nsetup: !!null ~\n").setup is None


def test_a_long_number_in_quotes_is_text() -> None:
    assert load_repo_config('env:\n  X: "' + "9" * 5000 + '"\n').env["X"] == "9" * 5000


def test_reading_keeps_nothing_between_files() -> None:
    """PyYAML's `construct_object` caches every node it builds; the shared constructor would
    hold every value of every file the server ever read."""
    from config.repo_config import _CONSTRUCTOR

    for _ in range(3):
        load_repo_config("image: a:1\nenv:\n  A: b\n  N: 1\n")
    assert _CONSTRUCTOR.constructed_objects == {}


def test_numbers_with_a_leading_zero_or_a_base_stay_as_written() -> None:
    # YAML 1.1 (PyYAML's constructor) read 0022 as octal: a umask became "18", a ZIP "1116".
    config = load_repo_config("env:\n  UMASK: 0022\n  ZIP: 02134\n  MASK: 0x1F\n  N: 17\n")
    assert dict(config.env) == {"UMASK": "0022", "ZIP": "02134", "MASK": "0x1F", "N": "17"}
    assert _problems("resources:\n  pids: 0400\n") == [
        "resources.pids: should be a valid integer (line 2)"
    ]
