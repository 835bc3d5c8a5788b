"""The pure core of `gantry app create`: manifest, URLs, GitHub's answer, the .env it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from config.settings import Settings, web_url_for
from gantry import app_manifest as core
from gantry.app_manifest import ManifestError

APP_YML = Path(__file__).resolve().parent.parent / "gantry" / "app.yml"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
ANSWER: dict[str, Any] = {
    "id": 42,
    "slug": "gantry-acme",
    "name": "Gantry Acme",
    "html_url": "https://github.com/apps/gantry-acme",
    "owner": {"login": "acme"},
    "pem": PEM,
    "webhook_secret": "e340154128314309424b7c8e90325147d99fdafa",
    "client_id": "Iv1.8a61f9b3a7aba766",
    "client_secret": "1726be1638095a19edd134c77bde3aa2ece1e5d8",
}


def test_the_manifest_is_app_yml_with_this_servers_webhook_and_way_back() -> None:
    base = core.parse_manifest(APP_YML.read_text())
    manifest = core.build_manifest(
        base, public_url="https://ci.acme.dev/gantry/", redirect_url="http://127.0.0.1:5/callback"
    )
    assert manifest["hook_attributes"] == {
        "url": "https://ci.acme.dev/gantry/webhook",
        "active": True,
    }
    assert manifest["redirect_url"] == "http://127.0.0.1:5/callback"
    assert manifest["default_permissions"] == base["default_permissions"]
    assert manifest["default_events"] == base["default_events"]
    assert manifest["public"] is False
    assert (
        core.build_manifest(base, public_url="https://x", redirect_url="r", name="Mine")["name"]
        == "Mine"
    )


def test_keys_github_does_not_know_are_refused() -> None:
    with pytest.raises(ManifestError, match="unknown manifest keys hook_url"):
        core.parse_manifest("name: G\nurl: https://x\nhook_url: https://x/webhook\n")
    with pytest.raises(ManifestError, match="name and url are required"):
        core.parse_manifest("name: G\n")


@pytest.mark.parametrize(
    ("web", "org", "expected"),
    [
        ("https://github.com", None, "https://github.com/settings/apps/new?state=s%2B1"),
        (
            "https://github.com",
            "acme",
            "https://github.com/organizations/acme/settings/apps/new?state=s%2B1",
        ),
        ("https://ghe.acme.dev/", None, "https://ghe.acme.dev/settings/apps/new?state=s%2B1"),
    ],
)
def test_the_new_app_page_for_an_account_or_organization(
    web: str, org: str | None, expected: str
) -> None:
    assert core.new_app_url(web, org, "s+1") == expected


def test_githubs_web_address_follows_the_api_url_unless_set() -> None:
    assert web_url_for("https://api.github.com") == "https://github.com"
    assert web_url_for("https://ghe.acme.dev/api/v3/") == "https://ghe.acme.dev"
    ghes = Settings(_env_file=None, github_api_url="https://ghe.acme.dev/api/v3")
    assert ghes.web_url == "https://ghe.acme.dev"
    explicit = Settings(_env_file=None, github_url="https://web.acme.dev/")
    assert explicit.web_url == "https://web.acme.dev"
    assert Settings(_env_file=None).web_url == "https://github.com"


def test_githubs_answer_gives_the_credentials() -> None:
    conversion = core.parse_conversion(ANSWER)
    assert (conversion.app_id, conversion.slug, conversion.owner) == (42, "gantry-acme", "acme")
    assert conversion.pem == PEM
    assert conversion.webhook_secret == ANSWER["webhook_secret"]


@pytest.mark.parametrize("missing", ["pem", "id", "client_secret"])
def test_an_answer_without_a_credential_is_refused(missing: str) -> None:
    answer = {k: v for k, v in ANSWER.items() if k != missing}
    with pytest.raises(ManifestError, match=missing):
        core.parse_conversion(answer)


def test_an_answer_without_a_webhook_secret_is_refused() -> None:
    with pytest.raises(ManifestError, match="no webhook secret"):
        core.parse_conversion({**ANSWER, "webhook_secret": None})


def test_the_env_file_keeps_other_settings_and_replaces_old_credentials(tmp_path: Path) -> None:
    old = (
        "# Gantry\nGANTRY_DATA_DIR=/srv/gantry\n"
        'GANTRY_GITHUB_PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\nMIIB\n'
        '-----END RSA PRIVATE KEY-----"\n'
        "export GANTRY_GITHUB_APP_ID=7\nGANTRY_GITHUB_WEBHOOK_SECRET=old\n"
    )
    assert core.configured_vars(old) == [
        "GANTRY_GITHUB_APP_ID",
        "GANTRY_GITHUB_PRIVATE_KEY",
        "GANTRY_GITHUB_WEBHOOK_SECRET",
    ]
    values = {
        core.APP_ID_VAR: "42",
        core.KEY_PATH_VAR: "/srv/my keys/app.pem",
        core.SECRET_VAR: "s3cr=t#x",
    }
    text = core.merge_env(old, values)
    env = tmp_path / ".env"
    env.write_text(text)
    assert dotenv_values(env) == {
        "GANTRY_DATA_DIR": "/srv/gantry",
        "GANTRY_GITHUB_APP_ID": "42",
        "GANTRY_GITHUB_PRIVATE_KEY_PATH": "/srv/my keys/app.pem",
        "GANTRY_GITHUB_WEBHOOK_SECRET": "s3cr=t#x",
    }
    assert "MIIB" not in text
    assert text.startswith("# Gantry\n")


def test_a_value_the_env_file_cannot_hold_is_refused() -> None:
    with pytest.raises(ManifestError, match="quote or a newline"):
        core.merge_env("", {core.KEY_PATH_VAR: "/it's/here.pem"})


@pytest.mark.parametrize(
    "url", ["gantry.example.com", "ftp://gantry.example.com", "https://", "https://h/?x=1"]
)
def test_a_public_url_github_cannot_deliver_to_is_refused(url: str) -> None:
    with pytest.raises(ManifestError, match="public URL"):
        core.check_public_url(url)
    assert (
        core.check_public_url("https://gantry.example.com/bot") == "https://gantry.example.com/bot"
    )
