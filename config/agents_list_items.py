"""AGENTS.md as people write it: `- Install deps: \\`pnpm install\\`` list items as commands.

Pure decisions on text: whether an inline code span is a whole command, and whether its
label (the item's words around it) or the command itself says installing or building
(setup) or testing or linting (checks). Dev servers, watchers and placeholders never run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["setup", "checks"]
WORD_RE = re.compile(r"[a-z0-9]+")
# Words of a label or of the command, first match wins (like headings).
SETUP_WORDS = frozenset(
    {"install", "installs", "installing", "installation", "deps", "dependencies", "bootstrap"}
    | {"build", "builds", "building", "compile", "compiles", "compiling", "setup"}
)
# Only in a command's own words: `npm ci`, `uv sync`, `dotnet restore` install.
COMMAND_SETUP_WORDS = frozenset({"ci", "sync", "restore"})
CHECK_WORDS = frozenset(
    {"test", "tests", "testing", "lint", "linting", "linter", "linters", "typecheck"}
    | {"typechecking", "check", "checks", "checking", "pytest", "vitest", "jest", "mypy"}
    | {"ruff", "eslint", "clippy", "tox", "nox", "tsc"}
)
SETUP_PHRASES: frozenset[tuple[str, ...]] = frozenset({("set", "up")})
CHECK_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    {("type", "check"), ("type", "checking"), ("unit", "tests")}
)
# A label about a long-running process: the command never ends on its own.
LONG_RUNNING_LABEL = frozenset(
    {"server", "servers", "serve", "serving", "watch", "watcher", "watchers", "watching"}
    | {"watches", "reload", "reloading", "storybook"}
)
# A command token (or a part of a script name like `test:watch`) that starts one; not as
# the value of a flag (`poetry install --with dev`).
LONG_RUNNING_TOKENS = frozenset(
    {"dev", "start", "serve", "server", "runserver", "watch", "storybook", "preview"}
)
LONG_RUNNING_FLAGS = ("--watch", "--reload", "--serve")
# `<project_name>`, `<test name>`, `{{package}}`: to be filled in by a person first.
PLACEHOLDER_RE = re.compile(r"<[A-Za-z_][\w .:/-]*>|\{\{[^{}]*\}\}")
# `CI=1 pnpm test`, `./gradlew check`, `python -m pytest`: assignments, then a program.
COMMAND_RE = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:\.{0,2}/|~/)?[A-Za-z0-9_][\w.+@/-]*")
FILE_NAME_RE = re.compile(r"[\w-]+\.[A-Za-z0-9]+")
TAKEN = {"setup": "labelled as installing or building", "checks": "labelled as testing or linting"}
TAKEN_BY_COMMAND = {
    "setup": "the command installs or builds",
    "checks": "the command tests or lints",
}
SKIP_PLACEHOLDER = "has a placeholder to fill in ({found})"
SKIP_LONG_RUNNING = "a dev server or watcher: it never ends, so it is never setup or a check"
SKIP_NOT_COMMAND = "not a whole command"
SKIP_UNLABELLED = "not labelled as installing, building, testing or linting"
SKIP_REPEATED = "already taken from line {line}"


@dataclass(frozen=True)
class ItemCommand:
    """One code span of a list item: the command, and its kind or why it was skipped."""

    command: str
    label: str
    kind: Kind | None
    reason: str


@dataclass(frozen=True)
class Vocabulary:
    """The words and two-word phrases that say setup, and those that say checks."""

    setup_words: frozenset[str]
    setup_phrases: frozenset[tuple[str, ...]]
    check_words: frozenset[str]
    check_phrases: frozenset[tuple[str, ...]]

    def kind(self, words: Sequence[str]) -> Kind | None:
        """Setup or checks from a run of words; the first telling word wins."""
        for index, word in enumerate(words):
            pair = tuple(words[index : index + 2])
            if word in self.setup_words or pair in self.setup_phrases:
                return "setup"
            if word in self.check_words or pair in self.check_phrases:
                return "checks"
        return None


LABELS = Vocabulary(SETUP_WORDS, SETUP_PHRASES, CHECK_WORDS, CHECK_PHRASES)


def words_kind(words: Sequence[str]) -> Kind | None:
    """What a label's (or a command's) words say it does."""
    return LABELS.kind(words)


def command_kind(command: str) -> Kind | None:
    """What a bare command says it does: `pnpm install`, `npm ci`, `make test`."""
    words = WORD_RE.findall(command.lower())
    if COMMAND_SETUP_WORDS.intersection(words[1:2]):
        return "setup"
    return words_kind(words)


def is_whole_command(code: str) -> bool:
    """A program with arguments, not a flag, a file name, a directory or a fragment."""
    text = code.strip().removeprefix("$ ").strip()
    if not text or "\n" in text or not COMMAND_RE.match(text):
        return False
    first = text.split()[0]
    # `package.json`, `src/`: a single word naming a file or a directory.
    return " " in text or not (first.endswith("/") or FILE_NAME_RE.fullmatch(first))


def long_running(label: str, command: str) -> bool:
    """A dev server or a watcher, by what the label or the command's words say."""
    if LONG_RUNNING_LABEL.intersection(WORD_RE.findall(label.lower())):
        return True
    tokens = [token.strip("'\"").lower() for token in command.split()]
    for index, token in enumerate(tokens):
        if token.startswith(LONG_RUNNING_FLAGS):
            return True
        after_flag = index > 0 and tokens[index - 1].startswith("-")
        if not after_flag and LONG_RUNNING_TOKENS.intersection(token.split(":")):
            return True
    return False


def judge(label: str, command: str) -> ItemCommand:
    """Take the command as setup or a check, or say why not."""
    command = command.strip().removeprefix("$ ").strip()
    placeholder = PLACEHOLDER_RE.search(command)
    if placeholder:
        return ItemCommand(command, label, None, SKIP_PLACEHOLDER.format(found=placeholder[0]))
    if not is_whole_command(command):
        return ItemCommand(command, label, None, SKIP_NOT_COMMAND)
    if long_running(label, command):
        return ItemCommand(command, label, None, SKIP_LONG_RUNNING)
    kind = words_kind(WORD_RE.findall(label.lower()))
    if kind is not None:
        return ItemCommand(command, label, kind, TAKEN[kind])
    kind = command_kind(command)
    if kind is not None:
        return ItemCommand(command, label, kind, TAKEN_BY_COMMAND[kind])
    return ItemCommand(command, label, None, SKIP_UNLABELLED)


def judge_item(label: str, spans: Sequence[str]) -> list[ItemCommand]:
    """Every code span of one list item; a label with no words borrows none (see caller)."""
    judged = [judge(label, span) for span in spans]
    # `Run tests with \`pytest\`, adding \`-x\` to stop early`: the flag is a fragment of
    # the command, not a command of its own; report only spans that could be commands.
    whole = [item for item in judged if item.reason != SKIP_NOT_COMMAND]
    return whole or judged[:1]
