"""Text a reader of GitHub cannot see, removed before anything reaches an agent. Pure.

GitHub renders a comment as Markdown and sanitizes its HTML, so a reader never sees link
reference definitions (they render as nothing, whatever their URL and title say), HTML
comments, the attributes of tags (an `<img alt>`, a `<span title>`), nor invisible
characters. All of these are removed; tags keep their bare names and the text between them.
Code blocks and code spans are shown as written, so they are kept verbatim (only invisible
characters go there).
"""

from __future__ import annotations

import re

from markdown_it.common import html_re

from config.hidden_links import drop_hidden_link_parts
from config.markdown_layout import Layout, layout, line_starts

# Zero-width, bidirectional-control and other invisible format characters that hide text
# from a reviewer (https://trojansource.codes/), Unicode tag characters (U+E0000-U+E007F,
# "ASCII smuggling") and the variation selectors that can carry bytes the same way.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
# Elements GitHub drops with their content.
UNSHOWN_ELEMENT = re.compile(r"<(script|style)(?:\s[^>]*)?>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
# An unterminated comment or unshown element hides everything after it.
UNTERMINATED = re.compile(r"<!--|<(?:script|style)(?:[\s>/]|$)", re.IGNORECASE)
# Raw HTML as CommonMark defines it (https://spec.commonmark.org/0.31.2/#raw-html), in one
# pattern so that the leftmost wins: a tag keeps only its name (attributes are never shown;
# the bare tag keeps the text's block structure, so a mention inside an HTML block stays out
# of prose); comments, processing instructions, declarations and CDATA go whole.
RAW_HTML = re.compile(
    rf"(?P<tag></?[A-Za-z][A-Za-z0-9-]*)(?:{html_re.attribute})*\s*(?P<slash>/?)>"
    rf"|{html_re.comment}|{html_re.processing}|{html_re.declaration}|{html_re.cdata}"
)
# Openers that match only with their closer after them: one past the last closer never
# matches, but each try reads to the end of the text (64 KiB of `<!--` took 13 s, on the
# event loop, from anyone who can comment). Such openers are set apart (their `<` made a
# NUL, which nothing else matches differently) while the patterns run.
CLOSED_BY = (
    ("<!--", "-->"),
    ("<?", "?>"),
    ("<![cdata[", "]]>"),
    ("<!", ">"),
    ("<script", "</script"),
    ("<style", "</style"),
)
APART = "\0"
HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# `[//]: # (hidden)` right under a line of text is not a definition but is meant as a
# comment (and taken for one by many renderers): removed too.
COMMENT_LINE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(?:#|<>)(?:[ \t].*)?$\n?", re.MULTILINE)
MAX_PASSES = 8


def strip_invisible(text: str) -> str:
    """The text without invisible characters."""
    return INVISIBLE.sub("", text)


def _bare(match: re.Match[str]) -> str:
    """A tag without its attributes; nothing for anything else."""
    tag = match.group("tag")
    return f"{tag}{match.group('slash')}>" if tag else ""


def _set_apart(text: str) -> str:
    """`text` with the `<` of every opener past its last closer made `APART`."""
    lower = text.lower()
    apart = set()
    for opener, closer in CLOSED_BY:
        at = lower.rfind(closer) + 1
        while (at := lower.find(opener, at)) >= 0:
            apart.add(at)
            at += 1
    if not apart:
        return text
    return "".join(APART if n in apart else c for n, c in enumerate(text))


def strip_prose(text: str) -> tuple[str, bool]:
    """Text outside code without its HTML; and whether an unterminated comment or element
    hides all that follows."""
    apart = APART not in text
    if apart:
        text = _set_apart(text)
    text = RAW_HTML.sub(_bare, UNSHOWN_ELEMENT.sub("", text))
    if apart:
        text = text.replace(APART, "<")
    text = COMMENT_LINE.sub("", text)
    cut = UNTERMINATED.search(text)
    return (text[: cut.start()], True) if cut else (text, False)


def _regions(found: Layout, text: str) -> list[tuple[int, int, bool]]:
    """Code to keep (True) and reference definitions to drop (False), in order."""
    starts = [*line_starts(text), len(text) + 1]
    drops = [(starts[n], min(starts[n + 1], len(text)), False) for n in found.reference_lines]
    return sorted([*((a, b, True) for a, b in found.code), *drops])


def _strip_once(text: str) -> str:
    """Invisible characters first: a zero-width space must not break a comment's opener.
    Then HTML and reference definitions; then, in what is left (tags bare, so no attribute
    can hold a bracket), the unseen parts of links and images."""
    text = strip_invisible(text).replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    found = layout(text)
    kept: list[str] = []
    at = 0
    for start, end, is_code in [*_regions(found, text), (len(text), len(text), False)]:
        if start < at:
            continue
        prose, cut = strip_prose(text[at:start])
        kept.append(prose)
        if cut:
            break
        kept.append(text[start:end] if is_code else "")
        at = end
    # Laid out again (each pass's result is the next pass's text: `layout` remembers it):
    # where code and blocks are once comments and attributes are gone is what GitHub shows.
    stripped = "".join(kept)
    after = layout(stripped)
    return drop_hidden_link_parts(stripped, after.code, found.labels | after.labels, after.blocks)


def strip_hidden_plain(text: str) -> str:
    """Text that is not Markdown (a path, a diff hunk) without HTML comments (an
    unterminated one hides the rest) and invisible characters; its tags are its own."""
    for _ in range(MAX_PASSES):
        stripped = HTML_COMMENT.sub("", strip_invisible(text))
        if stripped == text:
            return text
        text = stripped
    return strip_invisible(text.replace("<", ""))


def strip_hidden(text: str) -> str:
    """The text as a reader sees it: hidden comments, lines and characters removed."""
    for _ in range(MAX_PASSES):
        stripped = _strip_once(text)
        if stripped == text:
            return text
        text = stripped
    # Nested past any sane depth: no `<` survives, so no comment or tag can either; and
    # whatever is shaped like a link's title is dropped, even in what looked like code.
    return drop_hidden_link_parts(strip_invisible(text.replace("<", "")))
