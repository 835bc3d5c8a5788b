"""Server-side secrets: patterns, precedence, versions, file mode; no value in any error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from config.repo_config import ConfigError
from config.secret_store import (
    InsecureSecretsFileError,
    MissingSecretsError,
    SecretStore,
    check_file_mode,
    parse_secret_store,
    read_secret_store,
    secret_version,
)

STORE_TEXT = """\
"*":
  SHARED: everyone-value
acme/*:
  PYPI_TOKEN: org-value
  NPM_TOKEN: org-npm
Acme/API:
  PYPI_TOKEN: api-value
other/web:
  DEPLOY: other-value
"""


@pytest.fixture
def store() -> SecretStore:
    return parse_secret_store(STORE_TEXT)


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        (
            "acme/api",
            {"SHARED": "everyone-value", "PYPI_TOKEN": "api-value", "NPM_TOKEN": "org-npm"},
        ),
        (
            "ACME/Api",
            {"SHARED": "everyone-value", "PYPI_TOKEN": "api-value", "NPM_TOKEN": "org-npm"},
        ),
        (
            "acme/web",
            {"SHARED": "everyone-value", "PYPI_TOKEN": "org-value", "NPM_TOKEN": "org-npm"},
        ),
        ("other/web", {"SHARED": "everyone-value", "DEPLOY": "other-value"}),
        ("stranger/x", {"SHARED": "everyone-value"}),
    ],
)
def test_exact_beats_owner_wildcard_beats_star(
    store: SecretStore, repo: str, expected: dict[str, str]
) -> None:
    got = {name: value.get_secret_value() for name, value in store.available(repo).items()}
    assert got == expected


def test_resolve_gives_values_and_versions(store: SecretStore) -> None:
    secrets = store.resolve("acme/api", ["PYPI_TOKEN", "SHARED"])
    assert [s.name for s in secrets] == ["PYPI_TOKEN", "SHARED"]
    assert secrets[0].value.get_secret_value() == "api-value"
    assert secrets[0].version == secret_version("PYPI_TOKEN", SecretStr("api-value"))
    assert len(secrets[0].version) == 16
    assert "api-value" not in repr(secrets)


def test_version_changes_with_value_and_name_but_hides_both() -> None:
    one = secret_version("A", SecretStr("v1"))
    assert one == secret_version("A", SecretStr("v1"))
    assert one != secret_version("A", SecretStr("v2"))
    assert one != secret_version("B", SecretStr("v1"))
    assert "v1" not in one


def test_missing_secrets_are_named_without_values(store: SecretStore) -> None:
    with pytest.raises(MissingSecretsError) as info:
        store.resolve("other/web", ["PYPI_TOKEN", "DEPLOY", "NPM_TOKEN"])
    assert info.value.missing == ("NPM_TOKEN", "PYPI_TOKEN")
    message = str(info.value)
    assert "other/web" in message
    assert "NPM_TOKEN, PYPI_TOKEN" in message
    assert "value" not in message.replace("SECRETS_FILE", "")


def test_an_empty_store_has_nothing() -> None:
    with pytest.raises(MissingSecretsError):
        SecretStore().resolve("acme/api", ["X"])
    assert SecretStore().resolve("acme/api", []) == ()


def test_file_problems_never_echo_values() -> None:
    text = "acme/*:\n  lower: hunter2\n  GOOD: 12345\nacme:\n  X: sekrit\nACME/*:\n  Y: abc\n"
    with pytest.raises(ConfigError) as info:
        parse_secret_store(text, "secrets.yml")
    assert [str(p) for p in info.value.problems] == [
        "acme/*.lower: must be an upper-case name ([A-Z_][A-Z0-9_]*) (line 2)",
        "acme/*.GOOD: the value must be text (quote it) (line 3)",
        "acme: must be owner/name, owner/* or * (every repository) (line 4)",
        "ACME/*: listed twice (names ignore case) (line 6)",
    ]
    for secret in ("hunter2", "12345", "sekrit", "abc"):
        assert secret not in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o100600])
def test_owner_only_modes_are_accepted(mode: int) -> None:
    check_file_mode(mode, Path("s.yml"))


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o100644, 0o620])
def test_modes_open_to_others_are_refused(mode: int) -> None:
    with pytest.raises(InsecureSecretsFileError, match="chmod 600"):
        check_file_mode(mode, Path("s.yml"))


def test_read_checks_the_real_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yml"
    path.write_text(STORE_TEXT, encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(InsecureSecretsFileError):
        read_secret_store(path)
    path.chmod(0o600)
    assert read_secret_store(path).available("acme/x")["NPM_TOKEN"].get_secret_value() == "org-npm"
    assert read_secret_store(None) == SecretStore()
