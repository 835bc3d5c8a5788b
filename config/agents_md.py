"""AGENTS.md: setup and check commands from fenced shell blocks and list items under the
right headings (list items: see `config.agents_list_items`)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

from config.agents_list_items import SKIP_REPEATED, ItemCommand, Kind, Vocabulary, judge_item

AGENTS_FILE = "AGENTS.md"
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "zsh"})
PROMPT = "$ "
# Matched on whole words of a heading, case-insensitively; the first match in the heading wins.
SETUP_WORDS = frozenset({"setup", "install", "installation", "installing", "bootstrap"})
SETUP_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    {("set", "up"), ("setting", "up"), ("getting", "started")}
    | {("development", "environment"), ("dev", "environment")}
)
CHECK_WORDS = frozenset(
    {"test", "tests", "testing", "check", "checks", "checking", "lint", "linting", "linter"}
    | {"linters", "validation", "validate", "validating", "ci", "typecheck", "typechecking"}
)
CHECK_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    {("continuous", "integration"), ("type", "checking")}
)
HEADINGS = Vocabulary(SETUP_WORDS, SETUP_PHRASES, CHECK_WORDS, CHECK_PHRASES)
WORD_RE = re.compile(r"[a-z0-9]+")
# How a list item's inline parts read in its label (text as written, markup dropped).
LABEL_PARTS = {"code_inline": "…", "softbreak": " ", "hardbreak": " ", "html_inline": ""}
# A heading with one of these words starts review rules (`## Code review`, `# Reviewing PRs`).
REVIEW_WORDS = frozenset({"review", "reviews", "reviewing", "reviewer", "reviewers"})
MAX_REVIEW_RULES_CHARS = 20_000


@dataclass(frozen=True)
class Origin:
    """Where a command was written: a repo-relative file and a 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One shell command, where it came from, and the repo-relative directory it runs in."""

    text: str
    origin: Origin
    cwd: str = ""


@dataclass(frozen=True)
class IgnoredBlock:
    """A shell block that is neither setup nor checks, reported so maintainers see it."""

    origin: Origin
    heading: str | None


@dataclass(frozen=True)
class ListItem:
    """A list item's inline command under a setup or testing heading: taken or skipped."""

    origin: Origin
    judged: ItemCommand

    @property
    def taken(self) -> bool:
        return self.judged.kind is not None


@dataclass(frozen=True)
class AgentsDoc:
    """The commands one AGENTS.md gives for its own subtree."""

    path: str
    setup: tuple[Command, ...] = ()
    checks: tuple[Command, ...] = ()
    ignored: tuple[IgnoredBlock, ...] = ()
    # The sections about code review, heading included, as written (for `@gantry review`).
    review_rules: tuple[str, ...] = ()
    items: tuple[ListItem, ...] = ()

    @property
    def directory(self) -> str:
        """The repo-relative directory this file governs (`""` for the root)."""
        return posixpath.dirname(self.path)


def classify_heading(title: str) -> Kind | None:
    """Whether a heading is about setup, about checks, or neither (first keyword wins)."""
    return HEADINGS.kind(WORD_RE.findall(title.lower()))


@dataclass
class _Reading:
    """What one pass over an AGENTS.md has found so far."""

    path: str
    found: dict[Kind, list[Command]] = field(default_factory=lambda: {"setup": [], "checks": []})
    ignored: list[IgnoredBlock] = field(default_factory=list)
    items: list[ListItem] = field(default_factory=list)
    headings: list[tuple[int, str, Kind | None]] = field(default_factory=list)
    # The label of each list item we are inside, outermost first.
    labels: list[str] = field(default_factory=list)

    @property
    def kind(self) -> Kind | None:
        return next((h[2] for h in reversed(self.headings) if h[2] is not None), None)

    def add(self, kind: Kind, text: str, line: int) -> None:
        origin = Origin(self.path, line)
        self.found[kind].append(Command(text, origin, posixpath.dirname(self.path)))

    def doc(self, review_rules: tuple[str, ...]) -> AgentsDoc:
        setup, checks = tuple(self.found["setup"]), tuple(self.found["checks"])
        ignored, items = tuple(self.ignored), tuple(self.items)
        return AgentsDoc(self.path, setup, checks, ignored, review_rules, items)


def parse_agents_md(text: str, path: str = AGENTS_FILE) -> AgentsDoc:
    """Read the setup and check commands of one AGENTS.md; never fails on any Markdown."""
    reading = _Reading(path)
    tokens = MarkdownIt("commonmark").parse(text)
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            level = int(token.tag[1:])
            title = tokens[index + 1].content if index + 1 < len(tokens) else ""
            reading.headings = [h for h in reading.headings if h[0] < level]
            reading.headings.append((level, title, classify_heading(title)))
        elif token.type == "list_item_open":
            reading.labels.append("")
        elif token.type == "list_item_close" and reading.labels:
            reading.labels.pop()
        elif token.type == "inline" and reading.labels:
            _read_item(reading, token)
        elif token.type == "fence" and _language(token) in SHELL_LANGUAGES:
            _read_fence(reading, token)
    return reading.doc(review_sections(text, tokens))


def _read_fence(reading: _Reading, token: Token) -> None:
    """A shell block: its commands under a setup or checks heading, else reported ignored."""
    kind = reading.kind
    first_line = (token.map[0] if token.map else 0) + 2
    if kind is None:
        heading = reading.headings[-1][1] if reading.headings else None
        reading.ignored.append(IgnoredBlock(Origin(reading.path, first_line - 1), heading))
        return
    for offset, command in shell_commands(token.content, console=_language(token) == "console"):
        reading.add(kind, command, first_line + offset)


def _read_item(reading: _Reading, inline: Token) -> None:
    """A list item's text: its code spans judged under a setup or checks heading."""
    children = inline.children or []
    spans = [child.content for child in children if child.type == "code_inline"]
    label = " ".join("".join(LABEL_PARTS.get(c.type, c.content) for c in children).split())
    if not reading.labels[-1]:
        reading.labels[-1] = label
    if not spans or reading.kind is None:
        return
    # `- Unit tests:` then a nested `- \`pytest\``: the outer item's words label it.
    if not WORD_RE.search(label.lower()):
        label = next((outer for outer in reversed(reading.labels[:-1]) if outer), label)
    line = (inline.map[0] if inline.map else 0) + 1
    for judged in judge_item(label, spans):
        reading.items.append(ListItem(Origin(reading.path, line), _unless_taken(reading, judged)))
        if judged.kind is not None and reading.items[-1].taken:
            reading.add(judged.kind, judged.command, line)


def _unless_taken(reading: _Reading, judged: ItemCommand) -> ItemCommand:
    """The same command twice (a fence and a list item, say) runs once."""
    if judged.kind is None:
        return judged
    earlier = next((c for c in reading.found[judged.kind] if c.text == judged.command), None)
    if earlier is None:
        return judged
    reason = SKIP_REPEATED.format(line=earlier.origin.line)
    return ItemCommand(judged.command, judged.label, None, reason)


def review_sections(text: str, tokens: Sequence[Token]) -> tuple[str, ...]:
    """Each section whose heading is about review, up to the next heading of its level or
    above (its subsections belong to it), as the file's own lines."""
    lines = text.split("\n")
    heads = [
        (int(t.tag[1:]), t.map[0], tokens[i + 1].content if i + 1 < len(tokens) else "")
        for i, t in enumerate(tokens)
        if t.type == "heading_open" and t.map is not None
    ]
    sections = []
    for index, (level, start, title) in enumerate(heads):
        if REVIEW_WORDS.isdisjoint(WORD_RE.findall(title.lower())):
            continue
        end = next((s for lv, s, _ in heads[index + 1 :] if lv <= level), len(lines))
        sections.append("\n".join(lines[start:end]).strip()[:MAX_REVIEW_RULES_CHARS])
    return tuple(_outermost(sections))


def _outermost(sections: list[str]) -> list[str]:
    """Sections not already inside an earlier one (a review heading under a review heading)."""
    kept: list[str] = []
    for section in sections:
        if not any(section in outer for outer in kept):
            kept.append(section)
    return kept


def _language(token: Token) -> str:
    """The first word of a fence's info string, lower-cased (`bash title=x` → `bash`)."""
    words = token.info.strip().split(maxsplit=1)
    return words[0].lower() if words else ""


def shell_commands(content: str, console: bool = False) -> list[tuple[int, str]]:
    """Commands of one shell block with their 0-based line offsets.

    Prompts (`$ `) are stripped; in `console` blocks, lines without a prompt are output.
    Backslash continuations are joined; blank lines and `#` comments are dropped.
    """
    # markdown-it ends lines with \n only; splitlines() would also split on \x0c, \u2028, ...
    lines = content.split("\n")
    commands: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, raw in enumerate(lines):
        line = raw.strip()
        if pending is not None:
            start, text = pending
            pending = None
            line = _strip_prompt(line.removeprefix("> ") if console else line).strip()
        else:
            start, text = offset, ""
            if console and not (line.startswith(PROMPT) or line == PROMPT.strip()):
                continue
            line = _strip_prompt(line)
            if not line or line.startswith("#"):
                continue
        if _continues(line):
            pending = (start, f"{text}{line[:-1].rstrip()} ")
            continue
        commands.append((start, f"{text}{line}".strip()))
    if pending is not None and pending[1].strip():
        commands.append((pending[0], pending[1].strip()))
    return commands


def _strip_prompt(line: str) -> str:
    """`$ make test` → `make test`."""
    if line == PROMPT.strip():
        return ""
    return line[len(PROMPT) :].strip() if line.startswith(PROMPT) else line


def _continues(line: str) -> bool:
    """A line ending in an unescaped backslash continues on the next line."""
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def nearest_doc(docs: Iterable[AgentsDoc], file_path: str) -> AgentsDoc | None:
    """The AGENTS.md whose directory most closely contains `file_path` (repo-relative)."""
    best: AgentsDoc | None = None
    for doc in docs:
        directory = doc.directory
        inside = not directory or file_path.startswith(directory + "/")
        if inside and (best is None or len(directory) > len(best.directory)):
            best = doc
    return best


def checks_for_changes(
    docs: Sequence[AgentsDoc], changed_files: Sequence[str] | None
) -> tuple[Command, ...]:
    """Checks of the nearest AGENTS.md of each changed file (root's when none are given)."""
    if not changed_files:
        root = next((d for d in docs if not d.directory), None)
        return root.checks if root else ()
    chosen = {doc.path for f in changed_files if (doc := nearest_doc(docs, f)) is not None}
    ordered = sorted((d for d in docs if d.path in chosen), key=lambda d: (d.directory, d.path))
    return tuple(c for doc in ordered for c in doc.checks)


def setup_from_docs(docs: Sequence[AgentsDoc]) -> tuple[Command, ...]:
    """Setup of every AGENTS.md, root first; each runs in its own directory."""
    ordered = sorted(docs, key=lambda d: (d.directory.count("/") + bool(d.directory), d.path))
    return tuple(c for doc in ordered for c in doc.setup)
