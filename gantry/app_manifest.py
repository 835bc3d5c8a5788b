"""The pure core of `gantry app create`: the manifest, the URLs, the answer and the .env lines.

GitHub's manifest flow:
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import yaml

WEBHOOK_PATH = "/webhook"
# Manifest keys GitHub reads; anything else in app.yml is refused before GitHub sees it.
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
APP_ID_VAR = "GANTRY_GITHUB_APP_ID"
KEY_PATH_VAR = "GANTRY_GITHUB_PRIVATE_KEY_PATH"
KEY_VAR = "GANTRY_GITHUB_PRIVATE_KEY"
SECRET_VAR = "GANTRY_GITHUB_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
PUBLIC_URL_VAR = "GANTRY_PUBLIC_URL"
# What this command writes; any of them already set means an App is configured.
CREDENTIAL_VARS = (APP_ID_VAR, KEY_PATH_VAR, KEY_VAR, SECRET_VAR)
ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


class ManifestError(ValueError):
    """app.yml or GitHub's answer is not what the flow needs."""


@dataclass(frozen=True)
class Conversion:
    """What `POST /app-manifests/{code}/conversions` gives back: the new App and its secrets."""

    app_id: int
    slug: str
    name: str
    html_url: str
    owner: str
    pem: str
    webhook_secret: str
    client_id: str
    client_secret: str


def parse_manifest(text: str) -> dict[str, Any]:
    """app.yml as a mapping of the keys GitHub's manifest accepts."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"app.yml is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("app.yml must be a mapping")
    unknown = sorted(set(data) - MANIFEST_KEYS)
    if unknown:
        raise ManifestError(f"app.yml: unknown manifest keys {', '.join(unknown)}")
    if not data.get("name") or not data.get("url"):
        raise ManifestError("app.yml: name and url are required")
    return data


def build_manifest(
    base: dict[str, Any], *, public_url: str, redirect_url: str, name: str | None = None
) -> dict[str, Any]:
    """The manifest to post: app.yml with this server's webhook URL and the way back here."""
    hook = {**base.get("hook_attributes", {}), "url": webhook_url(public_url)}
    manifest = {**base, "hook_attributes": hook, "redirect_url": redirect_url}
    if name:
        manifest["name"] = name
    return manifest


def check_public_url(url: str) -> str:
    """The server's address as GitHub will take it for a webhook: http(s), with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ManifestError(f"the public URL {url!r} is not an http(s) address with a host")
    if parts.query or parts.fragment:
        raise ManifestError(f"the public URL {url!r} must not carry a query or fragment")
    return url


def webhook_url(public_url: str) -> str:
    """Where GitHub delivers webhooks: `/webhook` under the public URL (a path prefix kept)."""
    return public_url.rstrip("/") + WEBHOOK_PATH


def new_app_url(web_url: str, org: str | None, state: str) -> str:
    """GitHub's page that takes the manifest, for a personal account or an organization."""
    owner = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{web_url.rstrip('/')}{owner}/settings/apps/new?{urlencode({'state': state})}"


def parse_conversion(data: Any) -> Conversion:
    """The conversion's answer, refusing one without the credentials it must carry."""
    if not isinstance(data, dict):
        raise ManifestError("GitHub's answer to the code exchange is not an object")
    try:
        secret = data["webhook_secret"]
        owner = data.get("owner") or {}
        conversion = Conversion(
            app_id=int(data["id"]),
            slug=str(data["slug"]),
            name=str(data.get("name") or data["slug"]),
            html_url=str(data.get("html_url") or ""),
            owner=str(owner.get("login", "")) if isinstance(owner, dict) else "",
            pem=str(data["pem"]),
            webhook_secret=str(secret) if secret else "",
            client_id=str(data["client_id"]),
            client_secret=str(data["client_secret"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"GitHub's answer to the code exchange lacks {exc}") from None
    if not conversion.webhook_secret:
        # The manifest has an active webhook, so GitHub generates a secret; without one
        # `gantry serve` cannot verify deliveries.
        raise ManifestError("GitHub's answer carries no webhook secret")
    return conversion


def configured_vars(env_text: str) -> list[str]:
    """The App credential variables an .env file already sets."""
    found = {m.group(1) for line in env_text.splitlines() if (m := ENV_LINE.match(line))}
    return [name for name in CREDENTIAL_VARS if name in found]


def quote_env_value(value: str) -> str:
    """A single-quoted .env value (taken literally by the dotenv reader)."""
    if "'" in value or "\n" in value:
        raise ManifestError(f"cannot write {value!r} to .env: it holds a quote or a newline")
    return f"'{value}'"


def merge_env(env_text: str, values: dict[str, str]) -> str:
    """The .env text with `values` set: their old lines (and a PEM-text key) replaced."""
    dropped = {*values, KEY_VAR}
    kept: list[str] = []
    closing: str | None = None
    for line in env_text.splitlines():
        if closing is not None:
            closing = None if closing in line else closing
            continue
        found = ENV_LINE.match(line)
        if found is None or found.group(1) not in dropped:
            kept.append(line)
            continue
        closing = open_quote(line[found.end() :].strip())
    added = [f"{name}={quote_env_value(value)}" for name, value in values.items()]
    return "\n".join([*kept, *added]) + "\n"


def open_quote(value: str) -> str | None:
    """The quote a value opens and does not close on its line (a multi-line PEM), if any."""
    if value[:1] in ("'", '"') and value.count(value[0]) == 1:
        return value[0]
    return None
