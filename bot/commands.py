"""The command grammar: find `@handle <request>` in a comment and say what it asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from markdown_it import MarkdownIt

from config.hidden_text import strip_hidden

CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
MASKED_BLOCKS = {"fence", "code_block", "blockquote_open", "html_block"}
# Building a parser costs far more than parsing a comment: build it once.
# Only the block structure is read (code, quotes, HTML blocks): the inline rules are what a
# hostile comment makes slow (64 KiB of `![` took 1.5 s, on the event loop, from anyone).
MARKDOWN = MarkdownIt("commonmark").disable("inline")
MAX_REQUEST_CHARS = 20_000


class Kind(StrEnum):
    """What a mention asks Gantry to do."""

    REQUEST = "request"
    CANCEL = "cancel"
    RETRY = "retry"
    STATUS = "status"
    RESET_CACHE = "reset-cache"
    HELP = "help"
    EXEC = "exec"
    REVIEW = "review"
    ASK = "ask"
    PLAN = "plan"
    GO = "go"


# Kinds that take the rest of the comment as their text (`ask` and `plan` need one).
WITH_TEXT = (Kind.EXEC, Kind.REVIEW, Kind.ASK, Kind.PLAN)
NEEDS_TEXT = (Kind.EXEC, Kind.ASK, Kind.PLAN)
# Kinds that start a task, so a requester may pick its agent and model.
TASK_KINDS = (Kind.REQUEST, *WITH_TEXT, Kind.GO)
SUBCOMMANDS = {k.value: k for k in Kind if k is not Kind.REQUEST and k not in WITH_TEXT}


# Options a requester may put before the request: `@gantry --agent claude --model m fix it`,
# `@gantry --attempts 3 fix it`; also right after a subcommand: `@gantry review --attempts 3`.
OPTION_RE = re.compile(
    r"--(agent|model|attempts)(?:=|[ \t]+)([A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127})\s*"
)
# `--attempts` beyond this is not parsed further (the config and the server cap it far lower).
MAX_ASKED_ATTEMPTS = 100
# A branch to start from, before the request: `@gantry on release-2.1: fix it`. Git refuses
# `:` and whitespace in branch names, so the name ends at the first of them.
BRANCH_RE = re.compile(r"on[ \t]+([^\s:]{1,255}):(?:\s+|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    """A parsed mention: its kind, its text (the request, or `exec`'s command), and the
    agent, model, branch to start from and number of attempts the requester picked, if any.
    `attempts` is 0 when `--attempts` was given something other than a positive number."""

    kind: Kind
    text: str = ""
    agent: str | None = None
    model: str | None = None
    branch: str | None = None
    attempts: int | None = None


def clean(text: str) -> str:
    """What a reader of the comment sees: the one hidden-text filter every path uses."""
    return strip_hidden(text)


def mention_pattern(handle: str) -> re.Pattern[str]:
    """`@handle` as a word: not inside an e-mail address, a longer handle or a path, nor
    the organisation of a team mention (`@handle/reviewers`), nor another account whose
    name starts with it (`@handle[bot]`, `@handle.dev`: GitHub ends a mention at a dot only
    when no word character follows the dots)."""
    return re.compile(rf"(?<![\w@/.`-])@{re.escape(handle)}(?![\w/\[-])(?!\.+\w)", re.IGNORECASE)


def _blank(text: str) -> str:
    """Same length, newlines kept, everything else a space: offsets stay valid."""
    return re.sub(r"[^\n]", " ", text)


def _masked_lines(text: str) -> set[int]:
    """Lines inside fenced or indented code, `>` quotes and raw HTML blocks."""
    masked: set[int] = set()
    for token in MARKDOWN.parse(text):
        if token.type in MASKED_BLOCKS and token.map is not None:
            masked.update(range(token.map[0], token.map[1]))
    return masked


def mask_non_prose(text: str) -> str:
    """The text with code blocks, quotes and code spans blanked out, offsets unchanged."""
    masked = _masked_lines(text)
    lines = text.split("\n")
    kept = "\n".join(_blank(line) if n in masked else line for n, line in enumerate(lines))
    return CODE_SPAN.sub(lambda m: _blank(m.group(0)), kept)


def find_mention(text: str, handle: str) -> int | None:
    """The offset just past the first mention of `handle` in prose, or None."""
    match = mention_pattern(handle).search(mask_non_prose(text))
    return match.end() if match else None


def parse_command(body: str, handle: str) -> Command | None:
    """Parse a comment body; None when it does not mention `handle` in prose."""
    text = clean(body)
    end = find_mention(text, handle)
    if end is None:
        return None
    return interpret(text[end:].strip()[:MAX_REQUEST_CHARS])


def take_options(request: str, *, branch: bool = True) -> tuple[dict[str, str], str]:
    """Leading `--agent NAME`, `--model NAME`, `--attempts N` and (with `branch`) `on BRANCH:`
    options, and the text after. An option it does not know ends them: the rest is text."""
    options: dict[str, str] = {}
    while True:
        if match := OPTION_RE.match(request):
            options[match.group(1)] = match.group(2)
        elif branch and (match := BRANCH_RE.match(request)):
            options["branch"] = match.group(1)
        else:
            return options, request.strip()
        request = request[match.end() :]


def interpret(request: str) -> Command:
    """Turn the text after the mention into a subcommand or a request (with its options)."""
    options, request = take_options(request)
    command, after = _interpret(request)
    options.update(after)
    if options and command.kind in TASK_KINDS:
        return Command(
            command.kind,
            command.text,
            options.get("agent"),
            options.get("model"),
            options.get("branch"),
            asked_attempts(options.get("attempts")),
        )
    return command


def asked_attempts(value: str | None) -> int | None:
    """`--attempts`' number (0: not a positive whole number; None: not given)."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        return 0
    return min(int(value), MAX_ASKED_ATTEMPTS)


def _interpret(request: str) -> tuple[Command, dict[str, str]]:
    """The command, and the options right after its subcommand word (`review --attempts 3`):
    they count as if written before it. `on BRANCH:` there is text (`ask on macOS: why?`)."""
    if not request:
        return Command(Kind.HELP), {}
    first, *rest_list = request.split(None, 1)
    word = first.lower().rstrip(".!:,")
    options, rest = take_options(rest_list[0] if rest_list else "", branch=False)
    with_text = {k.value: k for k in WITH_TEXT}
    if word in with_text:
        kind = with_text[word]
        if rest or kind not in NEEDS_TEXT:
            return Command(kind, rest), options
        return Command(Kind.HELP), options
    if word in SUBCOMMANDS and not rest:
        return Command(SUBCOMMANDS[word]), options
    return Command(Kind.REQUEST, request), {}


HELP_TEXT = """\
I run a coding agent on this repository in a fresh environment and open a pull request with
the result. Write what you want after the mention:

- `@{handle} <request>`: start a task (on a pull request, the result lands on it)
- `@{handle} --agent claude --model claude-sonnet-4-5 <request>`: pick an agent and a model
  among those the repository allows (`agent.allow` in `.github/gantry.yml`)
- `@{handle} --attempts 3 <request>`: run several attempts side by side and publish the
  one whose checks pass (at most `agent.max_attempts`)
- `@{handle} on <branch>: <request>`: on an issue, start from that branch and open the pull
  request against it
- `@{handle} exec <command>`: run one command as the agent step
- `@{handle} review`: review this pull request (inline comments on its diff; nothing pushed);
  text after `review` tells the agent what to look at
- `@{handle} ask <question>`: answer a question about the code in a comment (no pull request)
- `@{handle} plan <request>`: post a plan for the request, without changing anything
- `@{handle} go`: carry out the last plan on this thread (edit the plan comment first to
  change it)
- `@{handle} status`: what the task on this thread is doing
- `@{handle} cancel`: stop the running task
- `@{handle} retry`: run the last task on this thread again
- `@{handle} reset-cache`: drop this repository's cached environments
- `@{handle} help`: this message

Only people with {permission} access to the repository can start tasks."""


def help_text(handle: str, min_permission: str = "write") -> str:
    """The reply to `help` and to an empty mention."""
    return HELP_TEXT.format(handle=handle, permission=min_permission)
