"""`network.allow` presets: expanded when the config is read, refused when unknown, documented."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from config.allow_presets import PRESETS, expand, known_presets, markdown_table, preset_domains
from config.repo_config import HOSTNAME_RE, ConfigError, parse_repo_config
from gantry import validate

DOCS = Path(__file__).parents[2] / "docs" / "repository-config.md"
TABLE_RE = re.compile(r"<!-- allow-presets:[^\n]*-->\n(.*?)\n<!-- /allow-presets -->", re.DOTALL)


def _allow(text: str) -> tuple[str, ...]:
    return parse_repo_config(f"network:\n  allow: {text}\n").config.network.allow


def test_a_preset_becomes_its_domains_in_place() -> None:
    assert _allow('[example.com, "@pypi", "@crates"]') == (
        "example.com",
        "pypi.org",
        "files.pythonhosted.org",
        "crates.io",
        "index.crates.io",
        "static.crates.io",
    )


def test_registries_is_every_preset_and_repeats_are_dropped() -> None:
    everything = _allow('["@registries", pypi.org, "@NPM"]')
    assert everything == tuple(d for domains in PRESETS.values() for d in domains)
    assert len(set(everything)) == len(everything)


def test_each_ecosystem_names_its_registry() -> None:
    assert _allow('["@npm"]') == ("registry.npmjs.org",)
    assert _allow('["@go"]') == ("proxy.golang.org", "sum.golang.org")
    assert "repo1.maven.org" in _allow('["@maven"]')
    assert "index.rubygems.org" in _allow('["@rubygems"]')
    assert _allow('["@debian"]') == ("deb.debian.org", "security.debian.org")
    assert "ports.ubuntu.com" in _allow('["@ubuntu"]')


def test_every_preset_domain_passes_the_domain_check() -> None:
    for preset in known_presets():
        for domain in preset_domains(preset):
            assert HOSTNAME_RE.fullmatch(domain), domain


def test_an_unknown_preset_is_an_error_at_its_index() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_repo_config('network:\n  allow:\n    - pypi.org\n    - "@foo"\n')
    [line] = caught.value.lines()
    assert line.startswith(".github/gantry.yml:4: network.allow[1]: unknown preset @foo (known: ")
    assert "@registries, @npm, @pypi" in line


def test_expand_keeps_plain_domains() -> None:
    assert expand(["a.example.com", "*.example.org"]) == ("a.example.com", "*.example.org")


def test_the_docs_table_is_the_modules() -> None:
    match = TABLE_RE.search(DOCS.read_text(encoding="utf-8"))
    assert match is not None, "docs/repository-config.md lost its allow-presets table"
    assert match.group(1) == markdown_table()


def test_validate_shows_presets_expanded(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    config = 'network:\n  agent: limited\n  allow: ["@go", example.com]\n'
    (tmp_path / ".github" / "gantry.yml").write_text(config, encoding="utf-8")
    out = io.StringIO()
    assert validate.run(tmp_path, None, out) == 0
    text = out.getvalue()
    assert "  - proxy.golang.org\n    - sum.golang.org\n    - example.com" in text
    assert "network.allow presets:\n  @go: proxy.golang.org, sum.golang.org" in text


def test_an_unquoted_preset_gets_a_hint_to_quote_it() -> None:
    with pytest.raises(ConfigError, match='quote values that start with @, like "@pypi"'):
        parse_repo_config("network: {agent: limited, allow: [@pypi]}")
