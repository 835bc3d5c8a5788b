"""PyYAML's errors as one line a maintainer can act on, at the line where the mistake starts.

PyYAML marks where it *noticed* a problem: an unterminated quote on line 4 is noticed at the
end of the file, an unclosed `[` on the line after it. Its `context_mark` remembers where the
construct began; for the constructs below that is where the mistake is.
"""

from __future__ import annotations

import yaml

# Contexts whose start is the mistake, and how to name what starts there.
STARTS = {
    "while scanning a quoted scalar": "the quoted text that starts on this line is not closed",
    "while parsing a flow sequence": "the [ list ] that starts on this line is not well formed",
    "while parsing a flow mapping": "the { mapping } that starts on this line is not well formed",
    "while scanning a simple key": "the key that starts on this line is not followed by ':'",
}
# Inside a quoted scalar, only a missing end quote is the start's fault (a bad escape is not).
QUOTE_UNCLOSED = "found unexpected end of stream"


def yaml_error_line(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    """The 1-based line where the problem starts and the message (without `invalid YAML`)."""
    problem_mark = exc.problem_mark or exc.context_mark
    noticed = problem_mark.line + 1 if problem_mark is not None else 1
    started = _start_line(exc)
    if started is not None and started != noticed:
        lead = STARTS[str(exc.context)]
        return started, f"{lead} ({exc.problem} on line {noticed})"
    reason = exc.problem or exc.context
    if exc.context and exc.problem and not exc.context.startswith("while "):
        reason = f"{exc.context}, {exc.problem}"
    return noticed, str(reason)


def _start_line(exc: yaml.MarkedYAMLError) -> int | None:
    """The line the construct in error began on, when that is where the mistake is."""
    if exc.context not in STARTS or exc.context_mark is None:
        return None
    if exc.context == "while scanning a quoted scalar" and exc.problem != QUOTE_UNCLOSED:
        return None
    return int(exc.context_mark.line) + 1
