"""The command grammar: examples, then properties over arbitrary comments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import Command, Kind, help_text, parse_command
from config.hidden_text import INVISIBLE

HANDLE = "gantry"
words = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters=" .,"), min_size=1
).filter(lambda s: s.strip() and "gantry" not in s.lower())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@gantry fix the flaky date test", Command(Kind.REQUEST, "fix the flaky date test")),
        ("Could you @gantry add a test?", Command(Kind.REQUEST, "add a test?")),
        ("@gantry\nline one\nline two", Command(Kind.REQUEST, "line one\nline two")),
        ("@Gantry please", Command(Kind.REQUEST, "please")),
        ("@gantry", Command(Kind.HELP)),
        ("@gantry   \n ", Command(Kind.HELP)),
        ("@gantry help", Command(Kind.HELP)),
        ("@gantry help me fix the parser", Command(Kind.REQUEST, "help me fix the parser")),
        ("@gantry cancel", Command(Kind.CANCEL)),
        ("@gantry retry.", Command(Kind.RETRY)),
        ("@gantry STATUS", Command(Kind.STATUS)),
        ("@gantry reset-cache", Command(Kind.RESET_CACHE)),
        ("@gantry exec pytest -q tests/", Command(Kind.EXEC, "pytest -q tests/")),
        ("@gantry exec\n  make lint", Command(Kind.EXEC, "make lint")),
        ("@gantry exec", Command(Kind.HELP)),
        ("@gantry fix <!-- hidden: rm -rf --> the bug", Command(Kind.REQUEST, "fix  the bug")),
        ("@gantry fix\u200b the\u202e bug", Command(Kind.REQUEST, "fix the bug")),
        ("see `@gantry` docs, then @gantry do it", Command(Kind.REQUEST, "do it")),
        ("@gantry review", Command(Kind.REVIEW)),
        ("@gantry review: mind the SQL", Command(Kind.REVIEW, "mind the SQL")),
        ("@gantry ask where is the retry logic?", Command(Kind.ASK, "where is the retry logic?")),
        ("@gantry ask", Command(Kind.HELP)),
        ("@gantry plan add a --json flag", Command(Kind.PLAN, "add a --json flag")),
        ("@gantry plan", Command(Kind.HELP)),
        ("@gantry go", Command(Kind.GO)),
        ("@gantry go!", Command(Kind.GO)),
        ("@gantry go fix it", Command(Kind.REQUEST, "go fix it")),
        ("@gantry --agent claude ask why?", Command(Kind.ASK, "why?", "claude")),
        ("@gantry --model m review", Command(Kind.REVIEW, "", None, "m")),
        ("@gantry! fix it", Command(Kind.REQUEST, "! fix it")),
        ("(@gantry) fix it", Command(Kind.REQUEST, ") fix it")),
        ("thanks @gantry... fix it", Command(Kind.REQUEST, "... fix it")),
        ("@gantry[bot] wrote this; @gantry fix it", Command(Kind.REQUEST, "fix it")),
    ],
)
def test_examples(body: str, expected: Command) -> None:
    assert parse_command(body, HANDLE) == expected


@pytest.mark.parametrize(
    "body",
    [
        "no mention at all",
        "`@gantry fix it`",
        "``code with ` and @gantry inside``",
        "```\n@gantry in a fence\n```",
        "~~~sh\n@gantry in a tilde fence\n~~~",
        "    @gantry in an indented code block",
        "> @gantry in a quote",
        "> quoted\ncontinued lazily @gantry here",
        "<!-- @gantry in a comment -->",
        "mail me at someone@gantry.dev",
        "@gantry-dev is another bot",
        "@gantryx is another user",
        "path/@gantry is not a mention",
        "cc @gantry/reviewers please look",
        "@gantry/reviewers fix it",
        "@gantry[bot] fix it",
        "thanks @gantry[bot], now fix it",
        "@Gantry[bot]: fix it",
        "@gantry.dev fix it",
        "@gantry..io fix it",
        "<div>\n@gantry in an html block\n</div>",
    ],
)
def test_not_a_mention(body: str) -> None:
    assert parse_command(body, HANDLE) is None


def test_the_first_mention_in_prose_wins() -> None:
    body = "> @gantry quoted request\n\n@gantry the real one"
    assert parse_command(body, HANDLE) == Command(Kind.REQUEST, "the real one")


def test_help_names_every_subcommand() -> None:
    text = help_text("gantry", "write")
    for sub in ("exec", "review", "ask", "plan", "go", "status", "cancel", "retry", "reset-cache"):
        assert f"`@gantry {sub}" in text
    assert "write access" in text


@given(st.text())
def test_any_text_parses_without_error(body: str) -> None:
    result = parse_command(body, HANDLE)
    assert result is None or isinstance(result.kind, Kind)


@given(st.text(), st.text())
def test_requests_never_carry_invisible_characters_or_comments(before: str, after: str) -> None:
    result = parse_command(f"{before}\n\n@gantry {after}", HANDLE)
    if result is not None:
        assert not INVISIBLE.search(result.text)
        assert "<!--" not in result.text


@given(words)
def test_a_mention_in_prose_is_a_request_with_the_text_after_it(request: str) -> None:
    result = parse_command(f"Hello team.\n\n@gantry {request}", HANDLE)
    assert result is not None
    if result.kind is Kind.REQUEST:
        assert result.text == request.strip()
    else:
        assert request.strip().lower().rstrip(".!:,") == result.kind.value


@given(words)
def test_code_and_quotes_never_trigger(request: str) -> None:
    for body in (
        f"`@gantry {request}`",
        f"```\n@gantry {request}\n```",
        f"> @gantry {request}",
        f"<!-- @gantry {request} -->",
    ):
        assert parse_command(body, HANDLE) is None, body


@given(words, st.sampled_from(["-dev", "bot", "_x", "-", "[bot]", ".dev", "[x"]))
def test_a_longer_handle_is_not_a_mention(request: str, suffix: str) -> None:
    assert parse_command(f"@gantry{suffix} {request}", HANDLE) is None


@given(words, st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_a_team_of_an_organisation_named_like_the_app_is_not_a_mention(
    request: str, team: str
) -> None:
    assert parse_command(f"cc @gantry/{team} {request}", HANDLE) is None
