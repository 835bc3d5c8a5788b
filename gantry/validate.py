"""`gantry config validate [PATH]`: a checkout's effective config and commands, or its errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

from config.agents_md import AgentsDoc, Command
from config.allow_presets import is_preset, preset_domains
from config.effective import parse_effective_config
from config.loader import (
    CommandPlan,
    find_agents_files,
    list_files,
    plan_commands,
    read_agents_docs,
    read_config_file,
    read_config_text,
    read_manifests,
)
from config.repo_config import CONFIG_PATH, ConfigError, ParsedConfig, Problem
from config.settings import Settings
from runner.languages import describe, shell_command

HELP = "validate .github/gantry.yml and the AGENTS.md files of a checkout"
DESCRIPTION = (
    "Print the effective repository config and the setup and check commands found, "
    "each with its origin; exit 1 with every error when something is wrong."
)
KIND_NAMES = {"setup": "setup", "checks": "a check"}
SOURCE_NOTE = {
    "config": "from the config",
    "org": "from the organisation's defaults",
    "AGENTS.md": "from AGENTS.md",
    "auto": "auto_install, from the lockfiles found",
    "none": "none",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `config validate [PATH]` to the `gantry` command line."""
    config = subparsers.add_parser("config", help="work with a repository's Gantry config")
    commands = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    validate = commands.add_parser("validate", help=HELP, description=DESCRIPTION)
    validate.add_argument(
        "path", nargs="?", type=Path, default=Path("."), help="the checkout (default: .)"
    )
    validate.add_argument(
        "--org-config",
        type=Path,
        metavar="FILE",
        help="the organisation's defaults (its .github repository's .github/gantry.yml)",
    )


def run(
    path: Path, settings: Settings | None, out: TextIO | None = None, org_file: Path | None = None
) -> int:
    """Print what Gantry would read from the checkout at `path`; 1 when anything is wrong."""
    out = out or sys.stdout
    if not path.is_dir():
        print(f"gantry config validate: {path} is not a directory", file=out)
        return 2
    docs = read_agents_docs(path, find_agents_files(path))
    try:
        org_text = read_org_file(org_file)
        parsed = parse_effective_config(
            read_config_text(path), settings, CONFIG_PATH, org_text, str(org_file)
        )
    except ConfigError as exc:
        print_docs(docs, out)
        print(f"\n{exc.source} has {len(exc.problems)} problem(s):", file=out)
        for line in exc.lines():
            print(f"  {line}", file=out)
        return 1
    print_config(parsed, out)
    print_provenance(parsed, out)
    print_presets(parsed, out)
    print_docs(docs, out)
    # Each file's own path lies in its subtree, so every AGENTS.md shows its checks.
    changed = [doc.path for doc in docs]
    plan = plan_commands(parsed, docs, changed, list_files(path), read_manifests(path))
    print_languages(parsed, out)
    print_plan(plan, parsed, out)
    print("\nOK", file=out)
    return 0


def print_config(parsed: ParsedConfig, out: TextIO) -> None:
    """The effective config as YAML, defaults filled in."""
    where = CONFIG_PATH if parsed.document.lines else f"no {CONFIG_PATH}: all defaults"
    print(f"Effective config ({where}):", file=out)
    dumped = yaml.safe_dump(
        parsed.config.model_dump(mode="json"), sort_keys=False, allow_unicode=True
    )
    print("  " + dumped.rstrip().replace("\n", "\n  "), file=out)


def read_org_file(org_file: Path | None) -> str | None:
    """The organisation's defaults file, read like the checkout's own; None: not given."""
    if org_file is None:
        return None
    text = read_config_file(org_file, str(org_file))
    if text is None:
        raise ConfigError([Problem("", "no such file", 1)], str(org_file))
    return text


def print_provenance(parsed: ParsedConfig, out: TextIO) -> None:
    """Where each effective value came from, and what the operator's ceilings capped."""
    provenance = parsed.provenance
    if provenance is None:
        return
    print("\nWhere each value comes from:", file=out)
    for line in provenance.lines():
        print(f"  {line}", file=out)


def print_presets(parsed: ParsedConfig, out: TextIO) -> None:
    """Each `network.allow` preset the file names, with the domains it stands for."""
    network = parsed.document.data.get("network")
    entries = network.get("allow") if isinstance(network, dict) else None
    presets = [e.strip().lower() for e in entries or () if isinstance(e, str) and is_preset(e)]
    if not presets:
        return
    print("\nnetwork.allow presets:", file=out)
    for preset in dict.fromkeys(presets):
        print(f"  {preset}: {', '.join(preset_domains(preset))}", file=out)


def print_docs(docs: Sequence[AgentsDoc], out: TextIO) -> None:
    """The AGENTS.md files found, and the shell blocks they hold that Gantry ignores."""
    names = ", ".join(doc.path for doc in docs) or "none"
    print(f"\nAGENTS.md files: {names}", file=out)
    for doc in docs:
        for block in doc.ignored:
            under = f'under "{block.heading}"' if block.heading else "before any heading"
            print(f"  {block.origin}: shell block {under} ignored (not setup or tests)", file=out)
        if doc.review_rules:
            headings = "; ".join(rule.split("\n", 1)[0] for rule in doc.review_rules)
            print(f"  {doc.path}: review rules for `@gantry review`: {headings}", file=out)
        for line in item_lines(doc):
            print(f"  {line}", file=out)


def item_lines(doc: AgentsDoc) -> list[str]:
    """Each list-item command under a setup or testing heading: taken (as what) or skipped."""
    lines = []
    for item in doc.items:
        judged = item.judged
        verdict = f"taken as {KIND_NAMES[judged.kind]}" if judged.kind else "skipped"
        lines.append(f"{item.origin}: list item `{judged.command}` {verdict}: {judged.reason}")
    return lines


def print_languages(parsed: ParsedConfig, out: TextIO) -> None:
    """The language versions selected before setup (the image's defaults when none)."""
    languages = parsed.config.languages
    print(f"\nLanguages: {describe(languages)}", file=out)
    if languages:
        print(f"  selected before setup with: {shell_command(languages)}", file=out)


def print_plan(plan: CommandPlan, parsed: ParsedConfig, out: TextIO) -> None:
    """Setup, maintenance and check commands, each with its origin and directory."""
    print_commands(f"Setup ({SOURCE_NOTE[plan.setup_source]})", plan.setup, out)
    if plan.detection is not None:
        for line in plan.detection.lines():
            print(f"  auto_install: {line}", file=out)
    elif not parsed.config.auto_install:
        print("  auto_install: off", file=out)
    print_commands("Maintenance", plan.maintenance, out)
    print_commands(f"Checks ({SOURCE_NOTE[plan.checks_source]})", plan.checks, out)


def print_commands(title: str, commands: Sequence[Command], out: TextIO) -> None:
    """One command per line: origin, directory when not the root, the command."""
    print(f"\n{title}:" if commands else f"\n{title}: none", file=out)
    for command in commands:
        where = f" (in {command.cwd}/)" if command.cwd else ""
        text = command.text.replace("\n", "\n      ")
        print(f"  {command.origin}{where}\n      {text}", file=out)
