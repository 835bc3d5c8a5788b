"""The gateway's pure parts: routes, headers, stream parsing, budgets, the capped session log."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.repo_config import BudgetConfig
from gateway.errors import error_body, error_message
from gateway.ledger import LOG_CAP, Budget, Exchange, TaskLedger, TaskUsage
from gateway.routes import Refusal, Route, client_token, route, upstream_headers
from gateway.tokens import TokenRegistry
from gateway.transcript import EVENT_CAP, Answer, StreamReader, inspect_request, read_json
from tests.gateway.conftest import MESSAGES_STREAM, RESPONSES_STREAM


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("POST", "/openai/v1/responses", "", Route("openai", "responses", "")),
        ("GET", "/openai/v1/models/gpt-5.1-codex", "", Route("openai", "models/gpt-5.1-codex", "")),
        (
            "POST",
            "/anthropic/v1/messages",
            "beta=true",
            Route("anthropic", "v1/messages", "beta=true"),
        ),
        ("GET", "/anthropic/v1/models", "limit=5", Route("anthropic", "v1/models", "limit=5")),
    ],
)
def test_allowed_routes(method: str, path: str, query: str, expected: Route) -> None:
    assert route(method, path, query) == expected


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("POST", "/openai/v1/models/..", ""),
        ("GET", "/openai/v1/models/a/b", ""),
        ("POST", "/anthropic/v1/messages", "beta=false"),
        ("GET", "/anthropic/v1/models", "limit=5&key=x"),
        ("POST", "/openai/v2/responses", ""),
    ],
)
def test_refused_routes(method: str, path: str, query: str) -> None:
    decision = route(method, path, query)
    assert isinstance(decision, Refusal)
    assert decision.status == 404


def test_client_auth_headers_never_cross() -> None:
    client = [
        ("Authorization", "Bearer gantry-x"),
        ("X-Api-Key", "gantry-x"),
        ("Host", "gw"),
        ("Connection", "keep-alive"),
        ("Content-Type", "application/json"),
    ]
    assert upstream_headers("anthropic", client, "real") == [
        ("Content-Type", "application/json"),
        ("x-api-key", "real"),
        ("Accept-Encoding", "identity"),
    ]
    assert ("Authorization", "Bearer real") in upstream_headers("openai", client, "real")


def test_client_token_per_provider() -> None:
    assert client_token("openai", {"authorization": "Bearer t"}) == "t"
    assert client_token("openai", {"x-api-key": "t"}) is None
    assert client_token("anthropic", {"x-api-key": "t"}) == "t"
    assert client_token("anthropic", {}) is None


def test_error_bodies_in_each_providers_shape() -> None:
    openai = json.loads(error_body("openai", 403, "gantry_budget_exhausted", "spent"))
    assert openai == {
        "error": {
            "message": "spent",
            "type": "insufficient_quota",
            "param": None,
            "code": "gantry_budget_exhausted",
        }
    }
    anthropic = json.loads(error_body("anthropic", 403, "c", "spent"))
    assert anthropic == {"type": "error", "error": {"type": "permission_error", "message": "spent"}}
    assert error_message(error_body("anthropic", 502, "c", "down")) == "down"
    assert error_message(b"<html>") is None


def _stream(chunks: list[bytes]) -> Answer:
    reader = StreamReader()
    for chunk in chunks:
        reader.feed(chunk)
    return reader.answer


@given(st.lists(st.integers(min_value=1, max_value=len(MESSAGES_STREAM) - 1), max_size=20))
def test_stream_usage_survives_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(MESSAGES_STREAM)]
    chunks = [MESSAGES_STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    answer = _stream([c.replace(b"\n", b"\r\n") for c in chunks])
    assert (answer.input_tokens, answer.output_tokens) == (80, 9)
    assert answer.rendered_text() == "Hi"
    assert answer.tool_calls() == ('Edit({}{"file": "a.py"})',)


def test_responses_and_chat_streams() -> None:
    answer = _stream([RESPONSES_STREAM])
    assert (answer.input_tokens, answer.output_tokens) == (120, 7)
    chat = (
        b"".join(
            b"data: " + json.dumps(chunk).encode() + b"\n\n"
            for chunk in (
                {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "a"}}]},
                {
                    "object": "chat.completion.chunk",
                    "choices": [
                        {
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"name": "sh", "arguments": "{}"}}
                                ]
                            }
                        }
                    ],
                },
                {
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
                },
            )
        )
        + b"data: [DONE]\n\n"
    )
    answer = _stream([chat])
    assert (answer.input_tokens, answer.output_tokens, answer.rendered_text()) == (5, 2, "a")
    assert answer.tool_calls() == ("sh({})",)


def test_a_runaway_event_is_dropped_not_held() -> None:
    reader = StreamReader()
    for _ in range(EVENT_CAP // 65536 + 2):
        reader.feed(b"x" * 65536)
    reader.feed(b"\n\n" + RESPONSES_STREAM)
    assert reader.answer.output_tokens == 7


def test_answers_are_capped() -> None:
    answer = Answer()
    for _ in range(1000):
        answer.add_text("y" * 100)
    assert len(answer.rendered_text()) < 20 * 1024
    assert answer.rendered_text().endswith("[…]")


def test_json_answers_and_request_digests() -> None:
    answer = read_json(
        "openai",
        json.dumps(
            {
                "output": [
                    {"type": "message", "content": [{"type": "output_text", "text": "done"}]}
                ],
                "usage": {"input_tokens": 3, "output_tokens": 1},
            }
        ).encode(),
    )
    assert (answer.rendered_text(), answer.input_tokens) == ("done", 3)
    assert read_json("openai", b"not json").input_tokens == 0
    request = inspect_request(json.dumps({"model": "m", "input": ["old", "new"]}).encode())
    assert (request.model, request.digest) == ("m", '"new"')


def test_budget_from_config_and_ceilings() -> None:
    budget = Budget.of(BudgetConfig())
    assert budget == Budget(requests=200, tokens=2_000_000, seconds=1800)
    assert budget.capped(Budget(100, 10**9, 60)) == Budget(100, 2_000_000, 60)


def test_the_session_log_stays_under_its_cap() -> None:
    ledger = TaskLedger("t", Budget(10**6, 10**9, 10**6), 0.0, {"openai": "sk-secret"})
    entry = Exchange("openai", "responses", "m", 200, "r" * 16000, "a" * 16000, (), 1, 1)
    for _ in range(200):
        ledger.record(entry, Answer(input_tokens=1, output_tokens=1))
    usage = ledger.snapshot()
    assert sum(e.size for e in usage.exchanges) <= LOG_CAP
    assert usage.exchanges_dropped == 200 - len(usage.exchanges) > 0
    assert usage.input_tokens == 200


def test_errors_are_redacted() -> None:
    ledger = TaskLedger("t", Budget(1, 1, 1), 0.0, {"openai": "sk-secret"})
    ledger.fail("bad key sk-secret", provider=True)
    assert ledger.snapshot().provider_error == "bad key [REDACTED]"


def test_summary_line() -> None:
    usage = TaskUsage("t", requests=4, input_tokens=12345, output_tokens=678, models=("gpt-5",))
    assert usage.summary() == "model gpt-5 · 4 requests · 12,345 tokens in / 678 out"
    assert TaskUsage("t", requests=1).summary() == "no model · 1 request · 0 tokens in / 0 out"


def test_tokens_are_revoked_and_never_shared() -> None:
    registry = TokenRegistry()
    a, b = registry.issue("a"), registry.issue("b")
    assert a != b
    assert a.startswith("gantry-")
    assert len(a) > 40
    assert (registry.task_of(a), registry.task_of(b)) == ("a", "b")
    registry.revoke("a")
    assert registry.task_of(a) is None
    assert registry.task_of(b) == "b"
    again = registry.issue("b")
    assert registry.task_of(b) is None
    assert registry.task_of(again) == "b"
