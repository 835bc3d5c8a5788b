"""AGENTS.md list items as people write them: which inline commands are taken, and why not."""

from __future__ import annotations

import pytest

from config.agents_list_items import (
    SKIP_LONG_RUNNING,
    SKIP_NOT_COMMAND,
    SKIP_UNLABELLED,
    is_whole_command,
    judge,
)
from config.agents_list_items import (
    SKIP_PLACEHOLDER as PLACEHOLDER,
)
from config.agents_md import parse_agents_md

AGENTS_MD_SITE = """\
## Setup commands
- Install deps: `pnpm install`
- Start dev server: `pnpm dev`
- Run tests: `pnpm test`
"""


def test_the_agents_md_site_example_gives_install_as_setup_and_test_as_a_check() -> None:
    doc = parse_agents_md(AGENTS_MD_SITE)
    assert [(c.text, c.origin.line) for c in doc.setup] == [("pnpm install", 2)]
    assert [(c.text, c.origin.line) for c in doc.checks] == [("pnpm test", 4)]
    skipped = [(i.origin.line, i.judged.command, i.judged.reason) for i in doc.items if not i.taken]
    assert skipped == [(3, "pnpm dev", SKIP_LONG_RUNNING)]


@pytest.mark.parametrize(
    ("label", "command", "kind"),
    [
        ("Install deps:", "pnpm install", "setup"),
        ("Build:", "cargo build --release", "setup"),
        ("Run tests:", "pnpm test", "checks"),
        ("Lint:", "ruff check .", "checks"),
        ("Type check:", "npx tsc --noEmit", "checks"),
        ("", "npm ci", "setup"),
        ("", "uv sync --dev", "setup"),
        ("", "pip install -e '.[dev]'", "setup"),
        ("Install:", "poetry install --with dev", "setup"),
        ("", "make test", "checks"),
        ("Then:", "CI=1 ./gradlew check", "checks"),
        ("$ prompts are fine:", "$ pytest -q", "checks"),
    ],
)
def test_labelled_or_telling_commands_are_taken(label: str, command: str, kind: str) -> None:
    assert judge(label, command).kind == kind


@pytest.mark.parametrize(
    ("label", "command", "reason"),
    [
        ("Start dev server:", "pnpm dev", SKIP_LONG_RUNNING),
        ("Run the app:", "npm start", SKIP_LONG_RUNNING),
        ("Run tests in watch mode:", "pnpm test", SKIP_LONG_RUNNING),
        ("Run tests:", "pnpm test:watch", SKIP_LONG_RUNNING),
        ("Run tests:", "jest --watchAll", SKIP_LONG_RUNNING),
        ("Install, then:", "python manage.py runserver", SKIP_LONG_RUNNING),
        ("Build:", "uvicorn app:app --reload", SKIP_LONG_RUNNING),
        ("Run tests:", 'pnpm vitest run -t "<test name>"', PLACEHOLDER.format(found="<test name>")),
        ("Install:", "pnpm install --filter {{pkg}}", PLACEHOLDER.format(found="{{pkg}}")),
        ("Test config:", "pytest.ini", SKIP_NOT_COMMAND),
        ("Tests live in:", "tests/", SKIP_NOT_COMMAND),
        ("Test flag:", "--coverage", SKIP_NOT_COMMAND),
        ("Deploy:", "make deploy", SKIP_UNLABELLED),
    ],
)
def test_servers_watchers_placeholders_and_fragments_are_skipped(
    label: str, command: str, reason: str
) -> None:
    judged = judge(label, command)
    assert (judged.kind, judged.reason) == (None, reason)


@pytest.mark.parametrize(
    ("code", "whole"),
    [
        *[("pnpm test", True), ("make", True), ("./scripts/test", True)],
        *[("package.json", False), ("-x", False), ("src/", False), ("", False)],
        *[("a\nb", False), ("(cd x)", False)],
    ],
)
def test_is_whole_command(code: str, whole: bool) -> None:
    assert is_whole_command(code) is whole


def test_only_items_under_setup_or_testing_headings_count() -> None:
    text = "## PR instructions\n- Always run `pnpm lint` and `pnpm test` first.\n"
    doc = parse_agents_md(text)
    assert (doc.setup, doc.checks, doc.items) == ((), (), ())


def test_a_nested_item_takes_its_outer_items_label_and_runs_in_its_directory() -> None:
    text = "# Tests\n\n1. Unit tests:\n   - `pytest -q`\n2. Deploy: `make deploy`\n"
    doc = parse_agents_md(text, "api/AGENTS.md")
    assert [(c.text, c.origin.line, c.cwd) for c in doc.checks] == [("pytest -q", 4, "api")]
    assert [(i.judged.command, i.taken) for i in doc.items] == [
        ("pytest -q", True),
        ("make deploy", False),
    ]


def test_a_command_both_fenced_and_listed_runs_once() -> None:
    text = "## Tests\n\n```sh\npytest -q\n```\n\n- Run the tests: `pytest -q`\n"
    doc = parse_agents_md(text)
    assert [c.text for c in doc.checks] == ["pytest -q"]
    [item] = doc.items
    assert (item.taken, item.judged.reason) == (False, "already taken from line 4")


def test_a_flag_beside_a_command_is_part_of_its_sentence_not_a_command() -> None:
    doc = parse_agents_md("## Testing\n- Run tests with `pytest`, adding `-x` to stop early\n")
    assert [c.text for c in doc.checks] == ["pytest"]
    assert [i.judged.command for i in doc.items] == ["pytest"]
