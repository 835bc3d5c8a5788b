"""The parts of links and images a reader of GitHub never sees, located in linear time. Pure.

GitHub shows a link's text, never its title (`[text](url "title")`: a tooltip at most), and
an image, never its description (`![alt](url "title")`). A full reference's label
(`[text][label]`) is not shown either. This finds those parts outside code, the way
CommonMark pairs brackets: the most recent `[` or `![` that no link has closed, a link
disabling the `[` before it, code spans binding tighter than brackets, a blank line ending
the paragraph.

markdown-it's own link rules are off (config/markdown_layout.py): they parse `![`-heavy text
at about 70 KB/s, on the event loop. Here every bracket is looked at once, every title and
destination end is found once (memoised, or from one pass over the parentheses), so the
work stays linear in the text whatever its shape. Where this reading and GitHub's could
differ, it leans to removing more: text shaped like a link title outside code goes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from markdown_it.common.utils import normalizeReference

# What the scan stops at: an escape, an opener, a closer, an autolink, a blank line.
TOKEN = re.compile(r"\\[!-/:-@\[-`{-~]|!\[|\[|\]|<|\n[ \t]*(?=\n|\Z)")
AUTOLINK = re.compile(
    r"<[A-Za-z][A-Za-z0-9.+-]{1,31}:[^\s<>]*>"
    r"|<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*>"
)
# Spaces, and at most one line end (a quote's `>` markers after it), as CommonMark allows
# around a link's destination and title.
SPACE = re.compile(r"[ \t]*(?:\n(?:[ \t]*>)*[ \t]*)?")
ANGLE_DESTINATION = re.compile(r"<(?:[^<>\n\\]|\\[^\n])*>")
# A title never spans a blank line.
_LINE = r"\n(?![ \t]*(?:\n|\Z))"
TITLE = re.compile(
    rf'"(?:[^"\\\n]|\\.|{_LINE})*"'
    rf"|'(?:[^'\\\n]|\\.|{_LINE})*'"
    rf"|\((?:[^()\\\n]|\\.|{_LINE})*\)",
    re.DOTALL,
)
LABEL = re.compile(r"\[((?:[^\[\]\\]|\\.){0,999})\]", re.DOTALL)
MAX_LABEL = 999
# A bare destination ends at a space or control character, or at a `)` it did not open.
DESTINATION_STOP = re.compile(r"[\x00-\x20\x7f]")
PARENTHESIS = re.compile(r"\\[^ ]|[()]")


@dataclass
class _Destinations:
    """Where a bare link destination starting anywhere ends, from one pass over the text's
    parentheses: `ends(start)` is O(log n) however many links start in one long word."""

    text: str
    stops: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    # depth[k]: the parentheses' depth before event k (depth[len(events)]: after the last);
    # below[k]: the first j > k with depth[j] < depth[k], so event j - 1 is the `)` that
    # first closes more than was open at k.
    depth: list[int] = field(default_factory=list)
    below: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stops = [m.start() for m in DESTINATION_STOP.finditer(self.text)]
        level = 0
        for match in PARENTHESIS.finditer(self.text):
            if match.group() in "()":
                self.events.append(match.start())
                self.depth.append(level)
                level += 1 if match.group() == "(" else -1
        self.depth.append(level)  # after the last event
        count = len(self.events)
        self.below = [count + 1] * (count + 1)  # count + 1: it never falls below
        waiting: list[int] = []
        for k, value in enumerate(self.depth):
            while waiting and self.depth[waiting[-1]] > value:
                self.below[waiting.pop()] = k
            waiting.append(k)

    def end(self, start: int) -> int | None:
        """The end of the bare destination at `start`, None when there is none."""
        stop_at = bisect.bisect_left(self.stops, start)
        stop = self.stops[stop_at] if stop_at < len(self.stops) else len(self.text)
        first = bisect.bisect_left(self.events, start)
        # The `)` that closes more than the destination opened ends it, if before the stop.
        closing = self.below[first]
        if closing <= len(self.events):
            at = self.events[closing - 1]
            if at < stop:
                return at if at > start else None
        # Otherwise the destination runs to the stop with its parentheses balanced.
        last = bisect.bisect_left(self.events, stop)
        if stop > start and self.depth[last] == self.depth[first]:
            return stop
        return None


@dataclass
class _Scan:
    """One pass over a text: the ranges to drop."""

    text: str
    code: Sequence[tuple[int, int]]
    labels: frozenset[str]
    blocks: Sequence[tuple[int, int]] = ()
    drops: list[tuple[int, int]] = field(default_factory=list)
    _destinations: _Destinations | None = None
    _tails: dict[int, tuple[int, int] | None] = field(default_factory=dict)

    def destination_end(self, start: int) -> int | None:
        if self._destinations is None:
            self._destinations = _Destinations(self.text)
        return self._destinations.end(start)

    def inline_tail(self, at: int) -> tuple[tuple[int, int], int] | None:
        """For `(destination "title")` at `at`: the range between the destination and the
        `)` (its title, if any), and the end of the `)`; None when it is not one."""
        text = self.text
        start = SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        if text.startswith(")", start):
            return (start, start), start + 1
        if text.startswith("<", start):
            angle = ANGLE_DESTINATION.match(text, start)
            end = angle.end() if angle else None
        else:
            end = self.destination_end(start)
        if end is None:
            return None
        after = self._after_destination(end)
        return None if after is None else ((end, after - 1), after)

    def _after_destination(self, end: int) -> int | None:
        """The end of `[space] [title] [space] )` after a destination ending at `end`
        (memoised: many destinations can end at the same place)."""
        if end not in self._tails:
            text = self.text
            at = SPACE.match(text, end).end()  # type: ignore[union-attr]
            if at > end and (title := TITLE.match(text, at)):
                at = SPACE.match(text, title.end()).end()  # type: ignore[union-attr]
            found = (at, at + 1) if text.startswith(")", at) else None
            self._tails[end] = found
        close = self._tails[end]
        return None if close is None else close[1]

    def reference_after(self, close: int, opener_end: int) -> tuple[int, bool] | None:
        """After the `]` at `close`: the end of a reference to a defined label and whether
        that reference was a full one (`[label]`, itself unseen); None when there is none."""
        text = self.text
        label = LABEL.match(text, close + 1)
        if label is not None and label.group(1).strip():
            defined = normalizeReference(label.group(1)) in self.labels
            return (label.end(), True) if defined else None
        if close - opener_end > MAX_LABEL or not self.labels:
            return None
        own = text[opener_end:close]
        if not own.strip() or normalizeReference(own) not in self.labels:
            return None
        return (label.end() if label is not None else close + 1), False

    def run(self) -> list[tuple[int, int]]:
        text, code, blocks = self.text, self.code, self.blocks
        openers: list[tuple[int, bool]] = []  # (start, is an image)
        active_from = 0  # `[` openers below this index are disabled by a link after them
        next_code = next_block = 0
        block: int | None = None  # the block of inline text the openers are in
        at = 0
        while (token := TOKEN.search(text, at)) is not None:
            start, at = token.start(), token.end()
            while next_code < len(code) and code[next_code][1] <= start:
                next_code += 1
            if next_code < len(code) and code[next_code][0] <= start:
                at = code[next_code][1]
                continue
            while next_block < len(blocks) and blocks[next_block][1] <= start:
                next_block += 1
            inside = next_block < len(blocks) and blocks[next_block][0] <= start
            if (next_block if inside else -1 - next_block) != block:
                block = next_block if inside else -1 - next_block
                openers.clear()
                active_from = 0
            # A link's destination and title end in its block too.
            limit = blocks[next_block][1] if inside else len(text)
            kind = token.group()
            if kind in ("[", "!["):
                openers.append((start, kind == "!["))
            elif kind == "<":
                autolink = AUTOLINK.match(text, start)
                at = autolink.end() if autolink else at
            elif kind.startswith("\n"):
                openers.clear()
                active_from = 0
            elif kind == "]" and openers:
                opener, image = openers.pop()
                disabled = not image and len(openers) < active_from
                active_from = min(active_from, len(openers))
                if disabled:
                    continue
                end = self._link(opener, image, start, limit)
                if end is None:
                    continue
                at = end
                # What this link's tail covered is not code (a code span cannot open
                # inside a title).
                while next_code < len(code) and code[next_code][0] < end:
                    next_code += 1
                if not image:
                    active_from = len(openers)
        return self.drops

    def _link(self, opener: int, image: bool, close: int, limit: int) -> int | None:
        """Drop the unseen parts of the link or image from `opener` to `close` (its `]`),
        which ends by `limit`; where it ends, None when it is not one."""
        text_start = opener + (2 if image else 1)
        if self.text.startswith("(", close + 1):
            tail = self.inline_tail(close + 1)
            if tail is not None and tail[1] <= limit:
                (title_start, title_end), end = tail
                self.drops.append((title_start, title_end))
                if image:
                    self.drops.append((text_start, close))
                return end
        reference = self.reference_after(close, text_start)
        if reference is None or reference[0] > limit:
            return None
        end, full = reference
        if full:
            self.drops.append((close + 1, end))
        if image:
            self.drops.append((text_start, close))
        return end


def hidden_link_parts(
    text: str,
    code: Sequence[tuple[int, int]] = (),
    labels: Iterable[str] = (),
    blocks: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """The ranges of `text` holding link titles, image descriptions and titles, and full
    references' labels, outside `code` (sorted offset ranges, shown as written); `labels`
    are the normalised labels the text's reference definitions define; `blocks` the ranges
    of its blocks of inline text (no bracket pairs across two; none given: blank lines
    alone end a block)."""
    found = _Scan(text, sorted(code), frozenset(labels), sorted(blocks)).run()
    return _merged(found)


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def drop_hidden_link_parts(
    text: str,
    code: Sequence[tuple[int, int]] = (),
    labels: Iterable[str] = (),
    blocks: Sequence[tuple[int, int]] = (),
) -> str:
    """`text` without the link and image parts a reader never sees (`hidden_link_parts`)."""
    kept, at = [], 0
    for start, end in hidden_link_parts(text, code, labels, blocks):
        kept.append(text[at:start])
        at = end
    kept.append(text[at:])
    return "".join(kept)
