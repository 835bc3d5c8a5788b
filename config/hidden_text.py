"""Text a reader of GitHub cannot see, removed before anything reaches an agent. Pure."""

from __future__ import annotations

import re

# Zero-width, bidirectional-control and other invisible format characters that hide text
# from a reviewer (https://trojansource.codes/), Unicode tag characters (U+E0000-U+E007F,
# "ASCII smuggling") and the variation selectors that can carry bytes the same way.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
# An unterminated comment hides everything after it, as GitHub renders it.
HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# A link reference definition to `#` or `<>` renders as nothing: `[//]: # (hidden)`.
COMMENT_LINE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(?:#|<>)(?:[ \t].*)?$\n?", re.MULTILINE)
MAX_PASSES = 8


def _strip_once(text: str) -> str:
    """Invisible characters first: a zero-width space must not break a comment's opener."""
    return COMMENT_LINE.sub("", HTML_COMMENT.sub("", INVISIBLE.sub("", text)))


def strip_hidden(text: str) -> str:
    """The text as a reader sees it: hidden comments, lines and characters removed."""
    for _ in range(MAX_PASSES):
        stripped = _strip_once(text)
        if stripped == text:
            return text
        text = stripped
    # Nested past any sane depth: no `<` survives, so no comment can either.
    return INVISIBLE.sub("", text.replace("<", ""))
