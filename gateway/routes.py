"""Which provider paths the gateway forwards, and which headers cross it: pure decisions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from config.settings import Settings

Provider = Literal["openai", "anthropic"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic")
PREFIXES: Mapping[Provider, str] = {"openai": "/openai/v1/", "anthropic": "/anthropic/"}
MODEL_ID = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,200}"
PAGING = {"limit": r"[0-9]{1,4}", "after_id": MODEL_ID, "before_id": MODEL_ID}
# (method, path pattern, allowed query parameters with their value patterns)
ALLOWED: Mapping[Provider, tuple[tuple[str, str, Mapping[str, str]], ...]] = {
    "openai": (
        ("POST", "responses", {}),
        ("POST", "chat/completions", {}),
        ("GET", "models", {}),
        ("GET", f"models/{MODEL_ID}", {}),
    ),
    "anthropic": (
        ("POST", "v1/messages", {"beta": "true"}),
        ("POST", "v1/messages/count_tokens", {"beta": "true"}),
        ("GET", "v1/models", {"beta": "true", **PAGING}),
        ("GET", f"v1/models/{MODEL_ID}", {"beta": "true"}),
    ),
}
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Whatever could carry a credential or no longer matches the body once it crossed the gateway,
# and OpenAI's headers that choose another organization or project than the key's own.
CLIENT_ONLY = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "host",
        "content-length",
        "openai-organization",
        "openai-project",
    }
)
# Request bodies aiohttp decodes as it reads them: sent on as read, without their encoding.
DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
UPSTREAM_ONLY = frozenset({"content-length", "content-encoding", "set-cookie", "server", "date"})


@dataclass(frozen=True)
class Route:
    """A request the gateway forwards: to which provider, which upstream path and query."""

    provider: Provider
    path: str
    query: str


@dataclass(frozen=True)
class Refusal:
    """A request the gateway answers itself, never forwarding it."""

    provider: Provider
    status: int
    code: str
    message: str


def provider_of(raw_path: str) -> Provider:
    """The provider whose error shape a path gets (OpenAI's for anything unknown)."""
    return "anthropic" if raw_path.startswith(PREFIXES["anthropic"]) else "openai"


def route(method: str, raw_path: str, raw_query: str) -> Route | Refusal:
    """Match a request against the allowlist; anything not on it is refused with 404."""
    provider = provider_of(raw_path)
    rest = raw_path.removeprefix(PREFIXES[provider])
    refusal = Refusal(
        provider, 404, "unknown_url", f"Gantry's model gateway does not forward {method} {raw_path}"
    )
    if rest == raw_path:
        return refusal
    for allowed_method, pattern, params in ALLOWED[provider]:
        if method == allowed_method and re.fullmatch(pattern, rest):
            query = _query(raw_query, params)
            if query is None:
                return Refusal(provider, 404, "unknown_url", "query parameters not allowed")
            return Route(provider, rest, query)
    return refusal


def _query(raw_query: str, params: Mapping[str, str]) -> str | None:
    """The query re-encoded from allowed parameters only, or None if any other is present."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    for name, value in pairs:
        pattern = params.get(name)
        if pattern is None or not re.fullmatch(pattern, value):
            return None
    return urlencode(pairs)


def upstream_headers(
    provider: Provider, client: Iterable[tuple[str, str]], key: str
) -> list[tuple[str, str]]:
    """The client's headers without hop-by-hop or auth headers, with the real key set."""
    kept = [
        (name, value)
        for name, value in client
        if name.lower() not in HOP_BY_HOP | CLIENT_ONLY
        and name.lower() != "accept-encoding"
        and not (name.lower() == "content-encoding" and value.strip().lower() in DECODED)
    ]
    auth = ("Authorization", f"Bearer {key}") if provider == "openai" else ("x-api-key", key)
    return [*kept, auth, ("Accept-Encoding", "identity")]


def client_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's answer headers that still hold once the body was re-chunked."""
    return [
        (name, value) for name, value in upstream if name.lower() not in HOP_BY_HOP | UPSTREAM_ONLY
    ]


def client_token(provider: Provider, headers: Mapping[str, str]) -> str | None:
    """The Gantry token the agent sent (Bearer for both, or Anthropic's x-api-key)."""
    bearer = headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip() or None
    if provider == "anthropic":
        return headers.get("x-api-key", "").strip() or None
    return None


@dataclass(frozen=True)
class Upstream:
    """Where one provider's requests go, and the server's key for it (if any)."""

    base_url: str
    key: str | None = field(default=None, repr=False)

    def url(self, route: Route) -> str:
        """The upstream URL of a forwarded route."""
        url = f"{self.base_url.rstrip('/')}/{route.path}"
        return f"{url}?{route.query}" if route.query else url


@dataclass(frozen=True)
class Providers:
    """The configured upstream of each provider."""

    openai: Upstream
    anthropic: Upstream

    def __getitem__(self, provider: Provider) -> Upstream:
        return self.openai if provider == "openai" else self.anthropic

    @classmethod
    def from_settings(cls, settings: Settings) -> Providers:
        """`GANTRY_OPENAI_*` and `GANTRY_ANTHROPIC_*`."""
        openai, anthropic = settings.openai_api_key, settings.anthropic_api_key
        return cls(
            Upstream(str(settings.openai_base_url), openai.get_secret_value() if openai else None),
            Upstream(
                str(settings.anthropic_base_url),
                anthropic.get_secret_value() if anthropic else None,
            ),
        )
