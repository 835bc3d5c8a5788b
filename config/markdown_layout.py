"""Where a Markdown text's code and link reference definitions sit, as markdown-it (a
CommonMark parser, with GitHub's tables) reads it: source offsets and line numbers. Pure."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import reference
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_inline import backtick
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token

CODE_BLOCKS = ("fence", "code_block")
REFERENCES = "gantry_reference_lines"
SPAN = "gantry_span"
LINE_START = re.compile(r"\n")


@dataclass(frozen=True)
class Layout:
    """Code (offset ranges, shown verbatim), reference definitions (lines, never shown), the
    labels they define (normalised, as links look them up), and the blocks of inline text
    (offset ranges of whole lines: a link never spans two)."""

    code: tuple[tuple[int, int], ...]
    reference_lines: frozenset[int]
    labels: frozenset[str] = frozenset()
    blocks: tuple[tuple[int, int], ...] = ()


def _recording_reference(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """markdown-it's rule, noting the lines each definition takes (it makes no token)."""
    found = reference(state, start, end, silent)
    if found and not silent:
        state.env.setdefault(REFERENCES, set()).update(range(start, state.line))
    return found


def _recording_backtick(state: StateInline, silent: bool) -> bool:
    """markdown-it's rule, noting where in its inline source each code span is."""
    start, pushed = state.pos, len(state.tokens)
    found = backtick(state, silent)
    if found and not silent and len(state.tokens) > pushed:
        state.tokens[-1].meta[SPAN] = (start, state.pos)
    return found


# Inline rules that cannot make or hide a code span, and that a hostile comment makes slow
# (64 KiB of `![` took a second of the event loop with them, 0.08 s without).
SLOW_INLINE = ["link", "image", "emphasis"]


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable(["table"]).disable(SLOW_INLINE)
    md.block.ruler.at("reference", _recording_reference)
    md.inline.ruler.at("backticks", _recording_backtick)
    return md


# Building a parser costs far more than parsing a comment: build it once.
PARSER = _parser()


def line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in LINE_START.finditer(text))]


def _locate(text: str, piece: str, begin: int, end: int) -> int:
    """Where a line of inline content is in its source line `text[begin:end]`: its end (a
    paragraph's lines are whole after their indent), else the first place after `begin` (a
    heading between its markers, a table's cells in turn); -1 when it is not there."""
    for stop in (end, len(text[:end].rstrip())):
        if stop - len(piece) >= begin and text.startswith(piece, stop - len(piece)):
            return stop - len(piece)
    return text.find(piece, begin, end)


def _piece_starts(
    text: str, starts: list[int], token: Token, cursors: dict[int, int]
) -> list[int] | None:
    """Where each line of an inline token's content begins in `text`; None when a line is
    not found as it is (a tab inside a list item's indent)."""
    assert token.map is not None
    found = []
    for n, piece in enumerate(token.content.split("\n")):
        number = token.map[0] + n
        if number >= len(starts):
            return None
        end = starts[number + 1] - 1 if number + 1 < len(starts) else len(text)
        at = _locate(text, piece, cursors.get(number, starts[number]), end)
        if at < 0:
            return None
        cursors[number] = at + len(piece)
        found.append(at)
    return found


def _offset(content: str, piece_starts: list[int], position: int) -> int:
    """An offset into an inline token's content, as an offset into the text."""
    line = content.count("\n", 0, position)
    line_begins = content.rfind("\n", 0, position) + 1
    return piece_starts[line] + position - line_begins


def _spans_of(token: Token) -> list[tuple[int, int]]:
    """The code spans of an inline token, as offsets into its content."""
    return [
        c.meta[SPAN] for c in token.children or () if c.type == "code_inline" and SPAN in c.meta
    ]


def _code_spans(text: str, starts: list[int], tokens: list[Token]) -> list[tuple[int, int]]:
    """Every code span's offsets in `text`. A token whose lines are not found as they are
    (a tab inside a list item's indent) has its code spans left out: stripped as prose,
    never kept unseen."""
    spans: list[tuple[int, int]] = []
    cursors: dict[int, int] = {}
    for token in tokens:
        if token.type != "inline" or token.map is None:
            continue
        pieces = _piece_starts(text, starts, token, cursors)
        if pieces is None:
            continue
        for a, b in _spans_of(token):
            start, end = _offset(token.content, pieces, a), _offset(token.content, pieces, b)
            if _same_ends(text[start:end], token.content[a:b]):
                spans.append((start, end))
    return spans


def _same_ends(source: str, content: str) -> bool:
    """A span found in the text reads as markdown-it read it (a line's prefix may differ
    in between, such as a quote's `>`)."""
    first, last = content.split("\n")[0], content.split("\n")[-1]
    return source.startswith(first) and source.endswith(last)


@functools.lru_cache(maxsize=4)
def layout(text: str) -> Layout:
    """Where `text`'s code and reference definitions are. `text` must have `\\n` line ends
    and no NUL (markdown-it rewrites those, which would shift every offset)."""
    env: dict[str, Any] = {}
    tokens = PARSER.parse(text, env)
    starts = line_starts(text)
    ends = [*starts[1:], len(text)]
    blocks = [
        (starts[t.map[0]], ends[t.map[1] - 1])
        for t in tokens
        if t.type in CODE_BLOCKS and t.map is not None
    ]
    code = sorted([*blocks, *_code_spans(text, starts, tokens)])
    labels = frozenset(env.get("references", {}))
    inline = {
        (starts[t.map[0]], ends[t.map[1] - 1])
        for t in tokens
        if t.type == "inline" and t.map is not None and t.map[1] > t.map[0]
    }
    references = frozenset(env.get(REFERENCES, set()))
    return Layout(tuple(code), references, labels, tuple(sorted(inline)))
