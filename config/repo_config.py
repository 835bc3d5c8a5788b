"""The repository config (`.github/gantry.yml`): safe YAML with line marks, a strict model."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from config.allow_presets import expand, is_preset, preset_domains
from config.durations import format_duration, format_size, parse_duration, parse_size
from config.errors import GantryError
from config.provenance import Provenance
from config.settings import DEFAULT_IMAGE, Settings
from config.yaml_errors import yaml_error_line

CONFIG_PATH = ".github/gantry.yml"
CONFIG_SCHEMA_VERSION = 1
MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 32
YAML_TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(
    YAML_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map")
)
# No setting needs a longer number; Python refuses to read an int of over 4300 digits.
MAX_NUMBER_CHARS = 100
# Integers as YAML 1.2 writes them, and those of them YAML 1.1 reads alike (plain decimal).
INT_FORMS = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
NUMBER_TAGS = frozenset(YAML_TAG + t for t in ("int", "float"))
SCALAR_TAGS = frozenset(YAML_TAG + t for t in ("str", "int", "float", "bool", "null"))
# YAML 1.2 core schema: `off`, `yes`, `on` stay text and dates stay text (PyYAML reads 1.1).
CORE_RESOLVERS = (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?[0-9]+$|^0o[0-7]+$|^0x[0-9a-fA-F]+$", "-+0123456789"),
    ("float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+.0123456789"),
    ("float", r"^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$", "-+."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
)

# What a value written with an explicit `!!null`, `!!bool`, `!!int` or `!!float` tag may say:
# the same as one the core schema reads as that type untagged. PyYAML's constructors are
# YAML 1.1's and lenient (`!!null foo` read as null, `!!bool yes` as true, `!!int 1:30` as 90).
TAGGED_FORMS = {
    YAML_TAG + kind: re.compile(
        "|".join(p for k, p, _ in CORE_RESOLVERS if k == kind).replace("$", r"\Z")
    )
    for kind in ("null", "bool", "int", "float")
}

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One mistake in a config file: the key path (`network.agnet`), what is wrong, the line."""

    path: str
    message: str
    line: int

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.message} (line {self.line})"


class ConfigError(GantryError):
    """A config file is invalid; `problems` lists every mistake with its key path and line."""

    def __init__(self, problems: Sequence[Problem], source: str = CONFIG_PATH) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        self.source = source
        super().__init__(f"{source}: " + "; ".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        """One `file:line: path: message` line per problem, as editors and CI logs expect."""
        return [
            f"{self.source}:{p.line}: {p.path + ': ' if p.path else ''}{p.message}"
            for p in self.problems
        ]


def render_path(path: KeyPath) -> str:
    """`('network', 'allow', 0)` → `network.allow[0]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _RefusedNode(yaml.MarkedYAMLError):
    """A node this reader does not accept (alias, anchor, too deep)."""


class _CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core scalars, no aliases and a depth limit."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _RefusedNode(None, None, "anchors and aliases are not supported", mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _RefusedNode(None, None, f"nested deeper than {MAX_DEPTH}", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_CoreLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in CORE_RESOLVERS:
    _CoreLoader.add_implicit_resolver(YAML_TAG + _tag, re.compile(_pattern), list(_first))


@dataclass
class YamlDocument:
    """Plain data read from YAML, and the line of every key path in it."""

    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int:
        """The line of the longest prefix of `path` present in the document (1 at worst)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return self.lines.get((), 1)

    def known_prefix(self, path: KeyPath) -> KeyPath:
        """The longest prefix of `path` that names something in the document."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return path[:end]
        return ()


def read_yaml(
    text: str | None, source: str = CONFIG_PATH, max_bytes: int = MAX_CONFIG_BYTES
) -> YamlDocument:
    """Read one YAML mapping safely, or raise `ConfigError` with every problem and its line."""
    if text is None or not text.strip():
        return YamlDocument({})
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError([Problem("", f"larger than {max_bytes // 1024} KiB", 1)], source)
    root = _compose(text, source)
    if root is None or root.tag == YAML_TAG + "null":
        return YamlDocument({})
    doc = YamlDocument({}, {(): root.start_mark.line + 1})
    if not isinstance(root, yaml.MappingNode):
        problem = Problem(
            "", "the file must be a mapping of keys (like `image: ...`)", doc.lines[()]
        )
        raise ConfigError([problem], source)
    problems: list[Problem] = []
    data = _to_python(root, (), doc.lines, problems)
    if problems:
        raise ConfigError(problems, source)
    assert isinstance(data, dict)
    doc.data = data
    return doc


def _compose(text: str, source: str) -> yaml.Node | None:
    """Parse to a node tree; YAML errors become a `ConfigError` at their line."""
    loader: _CoreLoader | None = None
    try:
        # The reader checks characters as soon as it is built, so that is inside the try too.
        loader = _CoreLoader(text)
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line, reason = yaml_error_line(exc)
        message = f"invalid YAML: {reason}"
        if reason and "'@'" in reason:
            message += ' (quote values that start with @, like "@pypi")'
        raise ConfigError([Problem("", message, line)], source) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", 0)
        line = text.count("\n", 0, position) + 1
        reason = getattr(exc, "reason", "unreadable text")
        raise ConfigError([Problem("", f"invalid YAML: {reason}", line)], source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _to_python(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], problems: list[Problem]
) -> Any:
    """Build plain data from a node, recording lines and collecting every problem."""
    line = node.start_mark.line + 1
    if node.tag not in ALLOWED_TAGS:
        problems.append(Problem(render_path(path), f"unsupported YAML tag {node.tag}", line))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, path, problems)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_to_python(item, (*path, index), lines, problems))
        return items
    assert isinstance(node, yaml.MappingNode)
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _key(key_node, path, problems)
        if key is None:
            continue
        key_path = (*path, key)
        key_line = key_node.start_mark.line + 1
        if key in mapping:
            problems.append(Problem(render_path(key_path), "duplicate key", key_line))
            continue
        lines[key_path] = key_line
        mapping[key] = _to_python(value_node, key_path, lines, problems)
    return mapping


def _scalar(node: yaml.ScalarNode, path: KeyPath, problems: list[Problem]) -> Any:
    """A scalar's value, or None after recording why it cannot be read (a number too long
    for Python, `!!int foo`, `!!map` on a single value)."""
    kind = str(node.tag).removeprefix(YAML_TAG)
    if node.tag in NUMBER_TAGS and len(str(node.value)) > MAX_NUMBER_CHARS:
        message = f"a number longer than {MAX_NUMBER_CHARS} characters (quote it if it is text)"
    elif node.tag not in SCALAR_TAGS:
        message = f"a single value cannot be a {kind}"
    elif node.tag in TAGGED_FORMS and not TAGGED_FORMS[node.tag].search(str(node.value)):
        message = f"cannot be read as {'an' if kind == 'int' else 'a'} {kind}"
    elif node.tag == YAML_TAG + "int" and written_in_another_base(str(node.value)):
        # PyYAML reads 0022 the YAML 1.1 way, as octal 18: an env value's `0022` (a umask, a
        # ZIP code) became "18". Kept as written; a number setting still reads 0400 as 400.
        return str(node.value)
    else:
        # The constructor itself, not `construct_object`: that caches every node it is given.
        construct = _CoreLoader.yaml_constructors[node.tag]
        try:
            return construct(_CONSTRUCTOR, node)
        except (ValueError, OverflowError, LookupError):
            message = f"cannot be read as {'an' if kind == 'int' else 'a'} {kind}"
    problems.append(Problem(render_path(path), message, node.start_mark.line + 1))
    return None


def written_in_another_base(text: str) -> bool:
    """An integer with a leading zero, `0o` or `0x`: YAML 1.1 and 1.2 read it differently."""
    return bool(INT_FORMS.fullmatch(text)) and not PLAIN_INT.fullmatch(text)


def _key(node: yaml.Node, path: KeyPath, problems: list[Problem]) -> str | None:
    """A mapping key as text, or None after recording why it is not one."""
    if isinstance(node, yaml.ScalarNode) and node.tag == YAML_TAG + "str":
        return str(node.value)
    line = node.start_mark.line + 1
    problems.append(Problem(render_path(path), "keys must be plain text", line))
    return None


_CONSTRUCTOR = _CoreLoader("")


# ---- the model -------------------------------------------------------------------------

NETWORK_MODES = ("off", "limited", "full")
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
PERMISSIONS = ("read", "triage", "write", "maintain", "admin")
LANGUAGES = ("python", "node", "go", "rust", "java", "ruby")
RESERVED_ENV_PREFIX = "GANTRY_"
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
LABEL_RE = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"{LABEL_RE}(?:\.{LABEL_RE})*")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
# `git check-ref-format`: no control characters, space, ~ ^ : ? * [ \, `..`, `@{` or `//`.
REF_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
DOMAIN_HINT = "must be a hostname like pypi.org or *.example.com, without scheme, port or path"
MAX_TIMEOUT = timedelta(hours=6)
MAX_TTL = timedelta(days=30)
MAX_LABEL_LENGTH = 50
MAX_SERVICES = 5
MAX_READY = timedelta(minutes=10)
SERVICE_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
# `gantry` is the task container's own host name.
RESERVED_SERVICE_NAMES = frozenset({"gantry", "localhost"})


def _text(value: object) -> str:
    """Non-blank text without NUL characters."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if not value.strip() or "\x00" in value:
        raise ValueError("must be non-empty text")
    return value


def _script(value: object) -> object:
    """A script may be written as one block of text or as a list of lines."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return value


def _one_or_many(value: object) -> object:
    """`checks: pytest -q` means one command."""
    return [value] if isinstance(value, str) else value


def _scalar_text(value: object) -> str:
    """Env values and versions: text or whole numbers; a bare float would lose digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError('write it in quotes, like "3.10" (unquoted, YAML reads 3.10 as 3.1)')
    if not isinstance(value, str):
        raise ValueError("must be text")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _env_name(value: str) -> str:
    """A shell variable name that does not override Gantry's own variables."""
    if not ENV_NAME_RE.fullmatch(value):
        raise ValueError("must be a shell variable name (letters, digits, _)")
    if value.upper().startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{RESERVED_ENV_PREFIX}* variables are set by Gantry")
    return value


def _secret_name(value: str) -> str:
    """An upper-case variable name for a server-side secret."""
    if not SECRET_NAME_RE.fullmatch(value):
        raise ValueError("must be an upper-case name like PYPI_TOKEN ([A-Z_][A-Z0-9_]*)")
    if value.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{RESERVED_ENV_PREFIX}* variables are set by Gantry")
    return value


def _domain(value: object) -> str:
    """An exact hostname or a `*.suffix` pattern with at least two labels after the star."""
    if not isinstance(value, str):
        raise ValueError(DOMAIN_HINT)
    text = value.strip().lower().removesuffix(".")
    host = text.removeprefix("*.")
    if len(text) > 253 or not HOSTNAME_RE.fullmatch(host):
        raise ValueError(DOMAIN_HINT)
    if host != text and "." not in host:
        raise ValueError(f"*.{host} is too broad; name a domain, like *.example.{host}")
    return text


def _allow_entry(value: object) -> str:
    """A domain, or a preset like `@pypi` (expanded once the whole list is read)."""
    if isinstance(value, str) and is_preset(value.strip()):
        preset = value.strip().lower()
        preset_domains(preset)
        return preset
    return _domain(value)


def _method(value: object) -> str:
    """An HTTP method, upper-cased."""
    text = value.upper() if isinstance(value, str) else ""
    if text not in HTTP_METHODS:
        raise ValueError(f"must be one of {', '.join(HTTP_METHODS)}")
    return text


def _language(value: str) -> str:
    """A language the images know how to select."""
    if value not in LANGUAGES:
        raise ValueError(f"unknown language; known: {', '.join(LANGUAGES)}")
    return value


def _version(value: str) -> str:
    """A version selector like `3.11`, `20` or `lts`."""
    if not VERSION_RE.fullmatch(value):
        raise ValueError("must be a version like 3.11, 20 or lts")
    return value


def _image(value: str) -> str:
    """A Docker image reference (`name[:tag][@digest]`, optional registry)."""
    if not IMAGE_RE.fullmatch(value):
        raise ValueError("must be a Docker image reference like ghcr.io/acme/dev:2026-11")
    return value


def _branch_prefix(value: str) -> str:
    """A prefix that makes valid branch names under `git check-ref-format` rules."""
    name = f"{value}1-x"
    parts = name.split("/")
    if (
        REF_FORBIDDEN_RE.search(name)
        or value.startswith(("/", "-"))
        or any(p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        raise ValueError("must make valid git branch names (no spaces, .., ~^:?*[\\, //, @{)")
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse repeated entries; they are always a mistake."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return values


def _bounded(low: timedelta, high: timedelta) -> AfterValidator:
    """A duration check with a readable message."""

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            bounds = f"between {format_duration(low)} and {format_duration(high)}"
            raise ValueError(f"must be {bounds}")
        return value

    return AfterValidator(check)


Text = Annotated[str, BeforeValidator(_text)]
# Before-validators run last-first: lists of lines are joined, then checked as text.
Script = Annotated[str, BeforeValidator(_text), BeforeValidator(_script)]
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
Timeout = Annotated[Duration, _bounded(timedelta(seconds=1), MAX_TIMEOUT)]
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]
EnvName = Annotated[str, AfterValidator(_env_name)]
SecretName = Annotated[str, AfterValidator(_secret_name)]
ScalarText = Annotated[str, BeforeValidator(_scalar_text)]
NetworkMode = Literal["off", "limited", "full"]
Permission = Literal["read", "triage", "write", "maintain", "admin"]
# A review finding's severity, lowest first (the order `review.min_severity` compares by).
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


class _Strict(BaseModel):
    """Every section refuses unknown keys and is immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkConfig(_Strict):
    """Network per phase, and what `limited` lets through."""

    setup: NetworkMode = "full"
    agent: NetworkMode = "off"
    # Presets become plain domains here, so the proxy and the task's CA only see domains.
    allow: Annotated[
        tuple[Annotated[str, BeforeValidator(_allow_entry)], ...], AfterValidator(expand)
    ] = ()
    methods: Annotated[
        tuple[Annotated[str, BeforeValidator(_method)], ...], AfterValidator(_unique)
    ] = ()


AGENT_PRESETS = ("codex", "claude")
MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")


def _model(value: str) -> str:
    """A model name as providers write them (`gpt-5-codex`, `claude-sonnet-4-5`)."""
    if not MODEL_RE.fullmatch(value):
        raise ValueError("must be a model name like gpt-5-codex (letters, digits, . _ : / @ + -)")
    return value


def _allowed_agent(value: str) -> str:
    """`codex`, `claude`, or `preset:model` (a preset with one model only)."""
    preset, _, model = value.partition(":")
    if preset not in AGENT_PRESETS:
        raise ValueError(f"must be a preset ({', '.join(AGENT_PRESETS)}), optionally :model")
    if model:
        _model(model)
    return value


# No repository may ask for more attempts of one task than this (each is a container).
MAX_ATTEMPTS_CEILING = 10


class BudgetConfig(_Strict):
    """What one task's agent may spend; the server's ceilings cap every value."""

    requests: int = Field(default=200, ge=1, le=100_000, strict=True)
    tokens: int = Field(default=2_000_000, ge=1, le=10**10, strict=True)
    time: Timeout = timedelta(minutes=30)


class AgentConfig(_Strict):
    """The agent: a preset (`codex`, `claude`) or any command; the server's default if absent."""

    preset: Literal["codex", "claude"] | None = None
    model: Annotated[str, AfterValidator(_model)] | None = None
    command: Text | None = None
    allow: Annotated[
        tuple[Annotated[str, AfterValidator(_allowed_agent)], ...], AfterValidator(_unique)
    ] = ()
    budget: BudgetConfig = BudgetConfig()
    # The most attempts a requester's `--attempts N` runs at once (the server's MAX_ATTEMPTS
    # caps it too); each attempt is a container of `resources` and a budget of its own.
    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_CEILING, strict=True)

    @field_validator("command")
    @classmethod
    def _one_agent(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("preset") is not None:
            raise ValueError("set agent.preset or agent.command, not both")
        return value


class ResourcesConfig(_Strict):
    """Limits of every container of a task."""

    cpus: float = Field(default=2.0, gt=0, le=256)
    memory: Annotated[Size, Field(ge=64 * 1024**2, le=1024**4)] = 4 * 1024**3
    pids: int = Field(default=512, ge=64, le=65536, strict=True)
    # The container's writable layer; enforced where the engine supports it (see doctor).
    disk: Annotated[Size, Field(ge=256 * 1024**2, le=16 * 1024**4)] = 10 * 1024**3


class TimeoutsConfig(_Strict):
    """How long each phase may run."""

    setup: Timeout = timedelta(minutes=20)
    agent: Timeout = timedelta(minutes=30)
    checks: Timeout = timedelta(minutes=10)


class CacheConfig(_Strict):
    """How long a cached environment stays valid; `0s` turns the cache off."""

    ttl: Annotated[Duration, _bounded(timedelta(0), MAX_TTL)] = timedelta(hours=12)


class PullRequestConfig(_Strict):
    """How Gantry's pull requests look."""

    draft: Literal["auto", True, False] = "auto"
    labels: Annotated[
        tuple[Annotated[Text, Field(max_length=MAX_LABEL_LENGTH)], ...], AfterValidator(_unique)
    ] = ("gantry",)
    branch_prefix: Annotated[Text, AfterValidator(_branch_prefix)] = "gantry/"
    # On a person's PR, push Gantry's commit to their branch instead of opening a stacked PR.
    push_to_pull_requests: bool = False


class ReviewConfig(_Strict):
    """`@gantry review`: whether new pull requests get one unasked, and what is worth posting."""

    auto: bool = False
    min_severity: Severity = "low"


class TriggersConfig(_Strict):
    """What starts a task, and who may start one."""

    mention: bool = True
    label: Annotated[Text | None, BeforeValidator(lambda v: None if v is False else v)] = "gantry"
    assign: bool = True
    min_permission: Permission = "write"


class ServiceResources(_Strict):
    """Limits of one service container (smaller than the task's by default)."""

    cpus: float = Field(default=1.0, gt=0, le=16)
    memory: Annotated[Size, Field(ge=32 * 1024**2, le=64 * 1024**3)] = 1024**3
    pids: int = Field(default=256, ge=16, le=4096, strict=True)


def _service_name(value: str) -> str:
    """A DNS label: the name the task's container reaches the service by."""
    if not SERVICE_NAME_RE.fullmatch(value) or value in RESERVED_SERVICE_NAMES:
        raise ValueError("must be a host name like db or redis ([a-z][a-z0-9-]*, at most 31)")
    return value


class ServiceConfig(_Strict):
    """A container beside the task's (a database, a cache), reachable by its key as host name."""

    image: Annotated[Text, AfterValidator(_image)]
    env: dict[EnvName, ScalarText] = Field(default_factory=dict)
    # Names from the server's secret store, given to the service as variables (trusted tasks).
    secrets: Annotated[tuple[SecretName, ...], AfterValidator(_unique)] = ()
    # Run inside the service until it exits 0; without it, the image's HEALTHCHECK decides.
    ready: Text | None = None
    ready_timeout: Annotated[Duration, _bounded(timedelta(seconds=1), MAX_READY)] = timedelta(
        seconds=60
    )
    resources: ServiceResources = ServiceResources()


ServiceName = Annotated[str, AfterValidator(_service_name)]


class RepoConfig(_Strict):
    """Everything `.github/gantry.yml` may say; every key optional, unknown keys refused."""

    image: Annotated[Text, AfterValidator(_image)] = DEFAULT_IMAGE
    languages: dict[
        Annotated[str, AfterValidator(_language)],
        Annotated[ScalarText, AfterValidator(_version)],
    ] = Field(default_factory=dict)
    auto_install: bool = True
    setup: Script | None = None
    maintenance: Script | None = None
    env: dict[EnvName, ScalarText] = Field(default_factory=dict)
    secrets: Annotated[tuple[SecretName, ...], AfterValidator(_unique)] = ()
    network: NetworkConfig = NetworkConfig()
    agent: AgentConfig = AgentConfig()
    checks: Annotated[tuple[Text, ...] | None, BeforeValidator(_one_or_many)] = None
    services: Annotated[dict[ServiceName, ServiceConfig], Field(max_length=MAX_SERVICES)] = Field(
        default_factory=dict
    )

    @field_validator("secrets")
    @classmethod
    def _secrets_not_in_env(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        clash = sorted(set(value) & set(info.data.get("env", {})))
        if clash:
            raise ValueError(f"also set in env: {', '.join(clash)}")
        return value

    resources: ResourcesConfig = ResourcesConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    cache: CacheConfig = CacheConfig()
    pull_request: PullRequestConfig = PullRequestConfig()
    triggers: TriggersConfig = TriggersConfig()
    review: ReviewConfig = ReviewConfig()


# ---- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedConfig:
    """A validated config and the line of every key the file set (for command origins)."""

    config: RepoConfig
    document: YamlDocument
    source: str = CONFIG_PATH
    # Where each value came from, when read with the organisation's defaults and the
    # operator's ceilings (config/effective.py); None: this file alone.
    provenance: Provenance | None = None

    def line_of(self, *path: str | int) -> int | None:
        """The line where the file set `path`, or None when it is a default."""
        return self.document.lines.get(path)

    def set_in(self, *path: str | int) -> tuple[str, int] | None:
        """The file and line that set `path` (this one or the organisation's); None: not set."""
        if self.provenance is not None:
            return self.provenance.set_in(path)
        line = self.line_of(*path)
        return None if line is None else (self.source, line)


def parse_repo_config(
    text: str | None, settings: Settings | None = None, source: str = CONFIG_PATH
) -> ParsedConfig:
    """Read gantry.yml text (None or empty: all defaults) or raise `ConfigError`."""
    document = read_yaml(text, source)
    try:
        config = RepoConfig.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, document), source) from None
    return ParsedConfig(apply_server_defaults(config, settings), document, source)


def load_repo_config(text: str | None, settings: Settings | None = None) -> RepoConfig:
    """The config of the default branch's `.github/gantry.yml` text (None: no file)."""
    return parse_repo_config(text, settings).config


def apply_server_defaults(config: RepoConfig, settings: Settings | None) -> RepoConfig:
    """Fill what the file left out from the server's `DEFAULT_IMAGE` and `AGENT_COMMAND`."""
    if settings is None:
        return config
    update: dict[str, Any] = {}
    if "image" not in config.model_fields_set:
        update["image"] = settings.default_image
    agent = config.agent
    if agent.command is None and agent.preset is None:
        if settings.agent_command:
            update["agent"] = agent.model_copy(update={"command": settings.agent_command})
        elif settings.agent_preset:
            model = agent.model or settings.agent_model
            update["agent"] = agent.model_copy(
                update={"preset": settings.agent_preset, "model": model}
            )
    return config.model_copy(update=update) if update else config


def describe_errors(exc: ValidationError, document: YamlDocument) -> list[Problem]:
    """Turn pydantic's errors into problems with the key path and line of each."""
    return [describe_error(error, document) for error in exc.errors(include_url=False)]


def describe_error(error: ErrorDetails, document: YamlDocument) -> Problem:
    """One of pydantic's errors as a problem at its key path's line in `document`."""
    loc = tuple(error["loc"])
    path = document.known_prefix(loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be", "should be").replace("valid tuple", "list")
    if error["type"] == "literal_error":
        message = message.replace("True", "true").replace("False", "false")
    if error["type"] == "extra_forbidden":
        message = _unknown_key_message(loc)
    return Problem(render_path(path), message, document.line_of(loc))


def _unknown_key_message(loc: KeyPath) -> str:
    """`unknown key`, with the closest valid key when there is a likely one."""
    model: type[BaseModel] = RepoConfig
    for part in loc[:-1]:
        annotation = (
            model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        )
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "unknown key"
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
