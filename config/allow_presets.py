"""Presets for `network.allow`: `@pypi` and friends stand for a registry's exact domains."""

from __future__ import annotations

from collections.abc import Iterable

PRESET_MARK = "@"
ALL_REGISTRIES = "registries"
# The hosts each package manager reaches by default: its index and the CDN its files come from.
PRESETS: dict[str, tuple[str, ...]] = {
    "npm": ("registry.npmjs.org",),
    "pypi": ("pypi.org", "files.pythonhosted.org"),
    "crates": ("crates.io", "index.crates.io", "static.crates.io"),
    "go": ("proxy.golang.org", "sum.golang.org"),
    "maven": ("repo.maven.apache.org", "repo1.maven.org"),
    "rubygems": ("rubygems.org", "index.rubygems.org"),
    "debian": ("deb.debian.org", "security.debian.org"),
    "ubuntu": ("archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com"),
}


class UnknownPresetError(ValueError):
    """An `@name` entry that names no preset."""


def known_presets() -> tuple[str, ...]:
    """Every preset as written in a config, `@registries` first."""
    return (PRESET_MARK + ALL_REGISTRIES, *(PRESET_MARK + name for name in PRESETS))


def is_preset(entry: str) -> bool:
    """Whether an allow entry is a preset (`@npm`) rather than a domain."""
    return entry.startswith(PRESET_MARK)


def preset_domains(entry: str) -> tuple[str, ...]:
    """The domains one preset stands for, or `UnknownPresetError`."""
    name = entry.removeprefix(PRESET_MARK).strip().lower()
    if name == ALL_REGISTRIES:
        return tuple(domain for domains in PRESETS.values() for domain in domains)
    if name not in PRESETS:
        known = ", ".join(known_presets())
        raise UnknownPresetError(f"unknown preset {entry} (known: {known})")
    return PRESETS[name]


def expand(entries: Iterable[str]) -> tuple[str, ...]:
    """The entries with every preset replaced by its domains, first mention kept, no repeats."""
    domains: list[str] = []
    for entry in entries:
        for domain in preset_domains(entry) if is_preset(entry) else (entry,):
            if domain not in domains:
                domains.append(domain)
    return tuple(domains)


def markdown_table() -> str:
    """The presets and their domains as the Markdown table docs/repository-config.md shows."""
    rows = ["| preset | domains |", "|---|---|"]
    for preset in known_presets():
        listed = ", ".join(f"`{domain}`" for domain in preset_domains(preset))
        rows.append(f"| `{preset}` | {listed} |")
    return "\n".join(rows)
