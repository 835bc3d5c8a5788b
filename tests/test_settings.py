"""Server settings: read from GANTRY_* variables and .env, with one-line errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from config.errors import SettingsError
from config.settings import Settings, load_settings
from gateway.routes import Providers, Route, route

SECRET = "s3cr3t-webhook-value"


def upstream_urls(settings: Settings) -> tuple[str, str]:
    """Where the gateway sends a Responses call and a Messages call under these settings."""
    providers = Providers.from_settings(settings)
    responses, messages = (
        route("POST", "/openai/v1/responses", ""),
        route("POST", "/anthropic/v1/messages", ""),
    )
    assert isinstance(responses, Route)
    assert isinstance(messages, Route)
    return providers.openai.url(responses), providers.anthropic.url(messages)


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(f"GANTRY_{name}", value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    return info.value.problems


def test_serving_needs_the_webhook_secret_and_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)  # `gantry run` and `validate` need neither
    assert settings.serving_problems() == [
        "GANTRY_GITHUB_WEBHOOK_SECRET: is required to serve but not set",
        "GANTRY_GITHUB_APP_ID and GANTRY_GITHUB_PRIVATE_KEY(_PATH): required to serve",
    ]
    with pytest.raises(SettingsError):
        _ = settings.webhook_secret


def test_blank_webhook_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems(monkeypatch, GITHUB_WEBHOOK_SECRET="  ") == [
        "GANTRY_GITHUB_WEBHOOK_SECRET: must not be empty"
    ]


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path))
    settings = load_settings(env_file=None)
    assert settings.api_url == "https://api.github.com"
    assert settings.executor == "docker"
    assert settings.max_concurrent_tasks == 2
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/gantry.db"
    assert settings.sqlite_path == tmp_path / "gantry.db"
    assert not settings.has_app_credentials
    assert (settings.openai_api_key, settings.anthropic_api_key) == (None, None)
    assert upstream_urls(settings) == (
        "https://api.openai.com/v1/responses",
        "https://api.anthropic.com/v1/messages",
    )


def test_every_design_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "GITHUB_APP_ID": "42",
        "GITHUB_PRIVATE_KEY": rsa_pem(),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        "BOT_HANDLE": "gantry-dev",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": "sqlite:////var/lib/gantry/tasks.db",
        "EXECUTOR": "local",
        "DEFAULT_IMAGE": "acme/dev:1",
        "AGENT_COMMAND": 'codex exec "$GANTRY_PROMPT"',
        "MAX_CONCURRENT_TASKS": "8",
        "PUBLIC_URL": "https://gantry.example.com",
        "SECRETS_FILE": str(tmp_path / "secrets.yml"),
        "EXTRA_CA_CERTS": str(tmp_path / "ca.pem"),
        "OPENAI_API_KEY": "sk-openai-from-env",
        "OPENAI_BASE_URL": "http://vllm.internal:8000/v1",
        "ANTHROPIC_API_KEY": "sk-ant-from-env",
        "ANTHROPIC_BASE_URL": "https://anthropic-proxy.example.com",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"GANTRY_{name}", value)
    settings = load_settings(env_file=None)
    assert settings.github_app_id == 42
    assert settings.api_url == "https://ghe.example.com/api/v3"
    assert settings.bot_handle == "gantry-dev"
    assert settings.sqlite_path == Path("/var/lib/gantry/tasks.db")
    assert settings.executor == "local"
    assert settings.default_image == "acme/dev:1"
    assert settings.agent_command == 'codex exec "$GANTRY_PROMPT"'
    assert settings.max_concurrent_tasks == 8
    assert str(settings.public_url) == "https://gantry.example.com/"
    assert settings.secrets_file == tmp_path / "secrets.yml"
    assert settings.extra_ca_certs == tmp_path / "ca.pem"
    assert settings.private_key_pem() == env["GITHUB_PRIVATE_KEY"]
    providers = Providers.from_settings(settings)
    assert (providers.openai.key, providers.anthropic.key) == (
        "sk-openai-from-env",
        "sk-ant-from-env",
    )
    assert upstream_urls(settings) == (
        "http://vllm.internal:8000/v1/responses",
        "https://anthropic-proxy.example.com/v1/messages",
    )


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"GANTRY_GITHUB_WEBHOOK_SECRET={SECRET}\nGANTRY_BOT_HANDLE=from-dotenv\n")
    settings = load_settings(env_file=env_file)
    assert settings.bot_handle == "from-dotenv"
    assert settings.webhook_secret == SECRET


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = rsa_pem()
    settings = Settings(github_webhook_secret=SECRET, github_app_id=1, github_private_key=pem)
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert SECRET not in text
    assert "PRIVATE KEY" not in text


def test_unreadable_private_key_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    found = problems(
        monkeypatch,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_APP_ID="7",
        GITHUB_PRIVATE_KEY_PATH=str(missing),
    )
    assert found == [
        f"GANTRY_GITHUB_PRIVATE_KEY_PATH: cannot read {missing}: No such file or directory"
    ]


def test_private_key_read_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(rsa_pem())
    monkeypatch.setenv("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GANTRY_GITHUB_APP_ID", "7")
    monkeypatch.setenv("GANTRY_GITHUB_PRIVATE_KEY_PATH", str(key_file))
    assert load_settings(env_file=None).private_key_pem() == key_file.read_text()


def test_garbage_private_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key-SENTINEL\n-----END RSA PRIVATE KEY-----"
    found = problems(
        monkeypatch, GITHUB_WEBHOOK_SECRET=SECRET, GITHUB_APP_ID="7", GITHUB_PRIVATE_KEY=garbage
    )
    assert len(found) == 1
    assert "not a readable PEM private key" in found[0]
    assert "SENTINEL" not in found[0]


def test_non_rsa_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    found = problems(
        monkeypatch, GITHUB_WEBHOOK_SECRET=SECRET, GITHUB_APP_ID="7", GITHUB_PRIVATE_KEY=ec_pem
    )
    assert found == ["the GitHub App private key must be an RSA key"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_APP_ID": "7"}, "must be set together"),
        ({"GITHUB_PRIVATE_KEY": "x"}, "must be set together"),
        ({"EXECUTOR": "kubernetes"}, "GANTRY_EXECUTOR: Input should be 'docker' or 'local'"),
        ({"MAX_CONCURRENT_TASKS": "0"}, "GANTRY_MAX_CONCURRENT_TASKS: Input should be greater"),
        ({"GITHUB_API_URL": "not a url"}, "GANTRY_GITHUB_API_URL: Input should be a valid URL"),
        ({"BOT_HANDLE": "bad handle!"}, "GANTRY_BOT_HANDLE: String should match pattern"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    found = problems(monkeypatch, GITHUB_WEBHOOK_SECRET=SECRET, **env)
    assert any(line.startswith(expected) or expected in line for line in found), found


def test_ceilings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MAX_NETWORK": "limited",
        "MAX_CPUS": "1.5",
        "MAX_MEMORY": "2g",
        "MAX_PIDS": "256",
        "MAX_DISK": "20g",
        "MAX_TIMEOUT_SETUP": "45m",
        "MAX_TIMEOUT_AGENT": "3600",
        "MAX_TIMEOUT_CHECKS": "",
        "ALLOWED_AGENTS": "codex, claude:claude-sonnet-*",
        "ALLOWED_IMAGES": "ghcr.io/acme/*,docker.io/library/python:3.*",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"GANTRY_{name}", value)
    settings = load_settings(None)
    assert (settings.max_network, settings.max_cpus, settings.max_pids) == ("limited", 1.5, 256)
    assert (settings.max_memory, settings.max_disk) == (2 * 1024**3, 20 * 1024**3)
    assert settings.max_timeout_setup == timedelta(minutes=45)
    assert settings.max_timeout_agent == timedelta(hours=1)
    assert settings.max_timeout_checks is None
    assert settings.allowed_agents == ("codex", "claude:claude-sonnet-*")
    assert settings.allowed_images == ("ghcr.io/acme/*", "docker.io/library/python:3.*")


def test_no_ceilings_by_default_and_bad_ones_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert settings.max_network == "full"
    assert (settings.max_memory, settings.allowed_agents, settings.allowed_images) == (
        None,
        None,
        None,
    )
    assert problems(monkeypatch, MAX_MEMORY="lots", MAX_NETWORK="some") == [
        "GANTRY_MAX_NETWORK: Input should be 'off', 'limited' or 'full'",
        "GANTRY_MAX_MEMORY: write a size with a unit, like 512m or 4g",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GANTRY_DRAIN_TIMEOUT", "inf"),
        ("GANTRY_INBOX_RETRY_FIRST", "inf"),
        ("GANTRY_TASK_LEASE", "nan"),
        ("GANTRY_DELIVERY_LOG_INTERVAL", "nan"),
    ],
)
def test_infinite_or_nan_numbers_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert [p.split(":")[0] for p in info.value.problems] == [name]


def test_a_huge_ceiling_in_seconds_is_refused_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_MAX_TIMEOUT_AGENT", "9" * 30)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert info.value.problems == ["GANTRY_MAX_TIMEOUT_AGENT: must be at most 3650d"]
