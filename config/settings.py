"""Server settings: `GANTRY_*` environment variables and `.env`, validated once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as UnreadableSettingError

from config.database import SQLITE_PREFIX, Database
from config.durations import MAX_DURATION, format_duration, parse_duration, parse_size
from config.errors import SettingsError

ENV_PREFIX = "GANTRY_"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_WEB_URL = "https://github.com"
# Enterprise Server serves its REST API under this path of its web address.
ENTERPRISE_API_PATH = "/api/v3"
DEFAULT_IMAGE = "gantry-universal:latest"
DEFAULT_DATA_DIR = Path("~/.local/share/gantry")
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """An optional setting: unset or empty is no value, anything else is parsed."""
    return lambda value: None if value is None or value == "" else parse(value)


def _duration(value: object) -> timedelta:
    """Seconds as a number, or a duration like `45m` or `1h30m`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value <= MAX_DURATION.total_seconds():  # NaN too; a huge one would overflow
            raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
        return timedelta(seconds=value)
    return parse_duration(value)


def _names(value: object) -> object:
    """`codex, claude` (the environment's way) or a list (a test's); empty is unset."""
    if isinstance(value, str):
        names = tuple(part.strip() for part in value.split(",") if part.strip())
        return names or None
    return value


class RegistryLogin(BaseModel):
    """One registry's credentials (`GANTRY_REGISTRY_AUTH`); the password never prints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr


class Settings(BaseSettings):
    """Every server setting of DESIGN.md; secrets are `SecretStr` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    github_app_id: int | None = Field(default=None, gt=0)
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    # Required to serve (checked by `serving_problems`); `gantry run` and `config validate`
    # work without it.
    github_webhook_secret: SecretStr | None = None
    github_api_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_API_URL)
    # GitHub's web address (where Apps are registered); default: derived from GITHUB_API_URL.
    github_url: AnyHttpUrl | None = None
    bot_handle: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    executor: Literal["docker", "local"] = "docker"
    default_image: str = DEFAULT_IMAGE
    agent_command: str | None = None
    # A preset as the server's default agent (`codex`, `claude`); AGENT_COMMAND wins if both.
    agent_preset: Literal["codex", "claude"] | None = None
    agent_model: str | None = None
    # Model providers: held by the server (the model gateway), never by a container.
    openai_api_key: SecretStr | None = None
    openai_base_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_OPENAI_BASE_URL)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_ANTHROPIC_BASE_URL)
    # The model gateway listens here; containers reach it at GATEWAY_ADDRESS (default: the
    # Docker bridge's gateway address, found at start-up). Port 0 (default) picks a free one.
    gateway_host: str | None = None
    gateway_port: Annotated[int, Field(ge=0, le=65535)] = 0
    gateway_address: str | None = None
    # `/metrics` (Prometheus) is served only on this HOST:PORT, an internal listener of its own,
    # never on the webhook's public port; unset: not served. Port 0 picks a free one.
    metrics_address: str | None = None
    # Ceilings no repository's `agent.budget` can exceed.
    max_agent_requests: Annotated[int, Field(ge=1)] = 500
    max_agent_tokens: Annotated[int, Field(ge=1)] = 5_000_000
    max_agent_time: Annotated[int, Field(ge=1)] = 6 * 3600
    # Ceilings no repository (nor its organisation's `.github` defaults) can exceed; unset:
    # no ceiling beyond the config's own limits (see config/ceilings.py).
    max_network: Literal["off", "limited", "full"] = "full"
    max_cpus: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None
    max_memory: Annotated[int | None, BeforeValidator(_optional(parse_size))] = None
    max_pids: Annotated[int | None, Field(ge=1)] = None
    max_disk: Annotated[int | None, BeforeValidator(_optional(parse_size))] = None
    max_timeout_setup: Annotated[timedelta | None, BeforeValidator(_optional(_duration))] = None
    max_timeout_agent: Annotated[timedelta | None, BeforeValidator(_optional(_duration))] = None
    max_timeout_checks: Annotated[timedelta | None, BeforeValidator(_optional(_duration))] = None
    # Comma-separated; unset: anything. Agents: `codex`, `claude:claude-sonnet-*`, `command`.
    # Images: shell patterns like `ghcr.io/acme/*` (DEFAULT_IMAGE is always allowed).
    allowed_agents: Annotated[tuple[str, ...] | None, NoDecode, BeforeValidator(_names)] = None
    allowed_images: Annotated[tuple[str, ...] | None, NoDecode, BeforeValidator(_names)] = None
    max_concurrent_tasks: Annotated[int, Field(ge=1, le=256)] = 2
    # A running task's lease: another worker takes the task back this long after its worker
    # stopped renewing it (it died). Workers renew every 2 s.
    task_lease: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 60.0
    # The name a worker holds its leases under; default: the host name and DATA_DIR. Unique
    # per worker: a worker restarting under its name takes back its unfinished tasks at once.
    worker_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # On SIGTERM, `gantry worker` claims nothing more and gives its running tasks this long to
    # end; what still runs then is stopped and queued again for another worker.
    drain_timeout: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 300.0
    # The most attempts one task runs side by side (`@gantry --attempts N`), whatever a
    # repository's `agent.max_attempts` says: a task holds one of MAX_CONCURRENT_TASKS' slots
    # but up to this many agent containers at once.
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # A delivery whose handling meets a GitHub failure is retried after this many seconds,
    # doubling each time, until the waits would pass INBOX_RETRY_LIMIT; then it is kept as
    # failed, with its reason, for the operator (`gantry doctor`).
    inbox_retry_first: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    inbox_retry_limit: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 600.0
    # Seconds between two reads of the App's delivery log (missed deliveries); 0: only at start.
    delivery_log_interval: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 300.0
    public_url: AnyHttpUrl | None = None
    secrets_file: Path | None = None
    extra_ca_certs: Path | None = None
    # The egress proxy of `network: limited` runs in a container of this image; it needs only
    # python3 (>= 3.8). Default: DEFAULT_IMAGE.
    egress_proxy_image: str | None = None
    # Credentials for pulling images, by registry host (JSON: {"ghcr.io": {"username": …,
    # "password": …}}); see docs/images.md. Without an entry, the host's docker login is used.
    registry_auth: dict[str, RegistryLogin] = Field(default_factory=dict)
    # The App has no `workflows` permission by default, so GitHub refuses pushes that touch
    # .github/workflows/; grant it to the App first, then set this.
    allow_workflow_changes: bool = False

    @field_validator("github_webhook_secret")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @field_validator("openai_api_key", "anthropic_api_key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None:
            Database(value)  # raises ValueError: "must start with sqlite:/// or postgresql://"
        return value

    @field_validator("data_dir", "github_private_key_path", "secrets_file", "extra_ca_certs")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @model_validator(mode="after")
    def _check_app_credentials(self) -> Settings:
        if self.github_private_key is not None and self.github_private_key_path is not None:
            raise ValueError(
                "set GANTRY_GITHUB_PRIVATE_KEY or GANTRY_GITHUB_PRIVATE_KEY_PATH, not both"
            )
        has_key = self.github_private_key is not None or self.github_private_key_path is not None
        if has_key != (self.github_app_id is not None):
            raise ValueError(
                "GANTRY_GITHUB_APP_ID and a private key (GANTRY_GITHUB_PRIVATE_KEY or "
                "GANTRY_GITHUB_PRIVATE_KEY_PATH) must be set together"
            )
        if has_key:
            load_private_key(self.private_key_pem())
        return self

    def serving_problems(self) -> list[str]:
        """What `gantry serve` needs and these settings lack."""
        problems = []
        if self.github_webhook_secret is None:
            problems.append("GANTRY_GITHUB_WEBHOOK_SECRET: is required to serve but not set")
        if not self.has_app_credentials:
            problems.append(
                "GANTRY_GITHUB_APP_ID and GANTRY_GITHUB_PRIVATE_KEY(_PATH): required to serve"
            )
        return problems

    @property
    def metrics_bind(self) -> tuple[str, int] | None:
        """Where `/metrics` listens (host, port), or None when it is not served."""
        return split_address(self.metrics_address) if self.metrics_address else None

    @property
    def webhook_secret(self) -> str:
        """The webhook secret; only called where `serving_problems` was checked."""
        if self.github_webhook_secret is None:
            raise SettingsError(["GANTRY_GITHUB_WEBHOOK_SECRET: is required to serve but not set"])
        return self.github_webhook_secret.get_secret_value()

    @property
    def has_app_credentials(self) -> bool:
        """Whether the App can authenticate to GitHub."""
        return self.github_app_id is not None

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or SQLite in `DATA_DIR` by default."""
        return self.database_url or f"{SQLITE_PREFIX}{self.data_dir / 'gantry.db'}"

    @property
    def database(self) -> Database:
        """The task store's database: SQLite (the default) or PostgreSQL."""
        return Database(self.effective_database_url)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file of the task store, or None when the database is not SQLite."""
        return self.database.sqlite_path

    @property
    def api_url(self) -> str:
        """The GitHub API base URL without a trailing slash."""
        return str(self.github_api_url).rstrip("/")

    @property
    def web_url(self) -> str:
        """GitHub's web address without a trailing slash: `GITHUB_URL`, else from the API URL."""
        if self.github_url is not None:
            return str(self.github_url).rstrip("/")
        return web_url_for(self.api_url)

    def private_key_pem(self) -> str:
        """The App's private key as PEM text, read from the setting or its file."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is None:
            raise ValueError("no private key is configured")
        try:
            return self.github_private_key_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"GANTRY_GITHUB_PRIVATE_KEY_PATH: cannot read {self.github_private_key_path}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None


def web_url_for(api_url: str) -> str:
    """github.com for api.github.com; `https://HOST` for Enterprise's `https://HOST/api/v3`."""
    if api_url.rstrip("/") == DEFAULT_API_URL:
        return DEFAULT_WEB_URL
    return api_url.rstrip("/").removesuffix(ENTERPRISE_API_PATH)


def load_private_key(pem: str) -> RSAPrivateKey:
    """Parse the App's PEM key; GitHub App keys are RSA (the JWT is RS256)."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(
            "the GitHub App private key is not a readable PEM private key "
            "(download it again from the App's settings page)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the GitHub App private key must be an RSA key")
    return key


def load_settings(env_file: Path | None = Path(".env")) -> Settings:
    """Build the settings or raise `SettingsError` with one line per problem."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None
    except UnreadableSettingError as exc:  # JSON that does not parse; its text never echoed
        raise SettingsError([str(exc)]) from None
    except UnicodeDecodeError as exc:  # python-dotenv reads `.env` as UTF-8
        raise SettingsError([f"{env_file}: not UTF-8 text (byte {exc.start + 1})"]) from None
    except OSError as exc:
        raise SettingsError([f"{env_file}: cannot be read ({exc.strerror or exc})"]) from None


def describe_errors(exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into `GANTRY_NAME: message` lines, never echoing input values."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error["loc"]
        name = f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but not set"
        if len(loc) > 1:  # inside a JSON setting: say where (`ghcr.io.password: …`)
            message = ".".join(str(part) for part in loc[1:]) + f": {message}"
        lines.append(f"{name}: {message}" if loc else message)
    return lines


def split_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9464` for IPv6) as host and port; ValueError when it is not."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)
