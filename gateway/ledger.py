"""Budgets and the per-task record of requests, tokens, models, errors and the session log."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from config.repo_config import BudgetConfig, NetworkMode
from config.settings import Settings
from gateway.routes import Provider
from gateway.transcript import Answer, redact

BudgetKind = Literal["requests", "tokens", "time"]
LOG_CAP = 1024 * 1024
ERRORS_CAP = 50
EXHAUSTED = "Gantry budget exhausted: {spent} of {limit}"
# A request's input tokens, guessed from its body before the answer says: JSON is about four
# bytes a token, and the input is most of what an agent's request costs.
BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class Budget:
    """What a task's agent may spend: requests, tokens (input + output), wall-time seconds."""

    requests: int
    tokens: int
    seconds: float

    def capped(self, ceiling: Budget) -> Budget:
        """This budget, no value above the server's ceiling."""
        return Budget(
            min(self.requests, ceiling.requests),
            min(self.tokens, ceiling.tokens),
            min(self.seconds, ceiling.seconds),
        )

    @classmethod
    def of(cls, config: BudgetConfig) -> Budget:
        """A repository's `agent.budget`."""
        return cls(config.requests, config.tokens, config.time.total_seconds())

    @classmethod
    def ceilings(cls, settings: Settings) -> Budget:
        """The server's `MAX_AGENT_*` ceilings."""
        return cls(settings.max_agent_requests, settings.max_agent_tokens, settings.max_agent_time)


@dataclass(frozen=True)
class Pacing:
    """How many requests of one task may be in flight, how long one waits for a slot, and
    how long its body may take to arrive. Codex sends one request at a time; Claude Code a
    few (its small model for titles and checks, subagents working side by side)."""

    in_flight: int = 8
    queue_seconds: float = 300.0
    body_seconds: float = 60.0


@dataclass(frozen=True)
class Exchange:
    """One request and its answer in the session log, redacted and capped."""

    provider: Provider
    path: str
    model: str | None
    status: int
    request: str
    answer: str
    tool_calls: tuple[str, ...]
    input_tokens: int
    output_tokens: int

    @property
    def size(self) -> int:
        """Characters this entry holds, for the log's total cap."""
        return len(self.request) + len(self.answer) + sum(map(len, self.tool_calls))


@dataclass(frozen=True)
class TaskUsage:
    """What one task's agent spent through the gateway, and what went wrong."""

    task_id: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    budget_exhausted: BudgetKind | None = None
    budget_message: str | None = None
    provider_error: str | None = None
    exchanges: tuple[Exchange, ...] = ()
    exchanges_dropped: int = 0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def summary(self) -> str:
        """The PR body's line: `model gpt-5-codex · 4 requests · 12,345 tokens in / 678 out`."""
        models = f"model {', '.join(self.models)}" if self.models else "no model"
        plural = "" if self.requests == 1 else "s"
        return (
            f"{models} · {self.requests:,} request{plural} · "
            f"{self.input_tokens:,} tokens in / {self.output_tokens:,} out"
        )


@dataclass
class TaskLedger:
    """The live, mutable record of one open task (`network`: its agent's network policy, for
    the provider-side tools it may use); `snapshot` freezes it."""

    task_id: str
    budget: Budget
    opened_at: float
    keys: dict[Provider, str]
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: list[str] = field(default_factory=list)
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=ERRORS_CAP))
    exhausted: BudgetKind | None = None
    budget_message: str | None = None
    provider_error: str | None = None
    log: deque[Exchange] = field(default_factory=deque)
    log_size: int = 0
    dropped: int = 0
    in_flight: int = 0
    reserved: int = 0
    secrets: tuple[str, ...] = ()
    network: NetworkMode = "off"

    @property
    def masked(self) -> tuple[str, ...]:
        """Every value redacted from what is recorded: the provider keys and the task's secrets."""
        return tuple(sorted({*self.keys.values(), *self.secrets}, key=len, reverse=True))

    def may_start(self, max_in_flight: int) -> bool:
        """Whether one more request may start now: a free slot, and (while others are in
        flight) tokens spent plus those reserved by requests in flight under the budget.
        With none in flight the budget check proper (`spend`) decides."""
        if self.in_flight >= max_in_flight:
            return False
        tokens = self.input_tokens + self.output_tokens + self.reserved
        return self.in_flight == 0 or tokens < self.budget.tokens

    def start(self, body_size: int | None) -> int:
        """Take a slot, holding a guess of the request's input tokens (from its declared
        body size) until its answer is counted; the guess, to give back to `end`. A body of
        no declared size (chunked) holds all the budget left: nothing else starts beside it."""
        if body_size is None:
            used = self.input_tokens + self.output_tokens + self.reserved
            guess = max(1, self.budget.tokens - used)
        else:
            guess = body_size // BYTES_PER_TOKEN
        self.in_flight += 1
        self.reserved += guess
        return guess

    def end(self, guess: int) -> None:
        """Give back a finished request's slot and reservation."""
        self.in_flight -= 1
        self.reserved -= guess

    def spend(self, now: float) -> str | None:
        """Count one request, or say which budget is spent (and count nothing)."""
        spent = self._spent(now)
        if spent is not None:
            kind, message = spent
            self.exhausted, self.budget_message = kind, message
            return message
        self.requests += 1
        return None

    def _spent(self, now: float) -> tuple[BudgetKind, str] | None:
        budget, elapsed = self.budget, now - self.opened_at
        if self.requests >= budget.requests:
            spent, limit = f"{self.requests:,} requests", f"{budget.requests:,}"
            return "requests", EXHAUSTED.format(spent=spent, limit=limit)
        tokens = self.input_tokens + self.output_tokens
        if tokens >= budget.tokens:
            spent, limit = f"{tokens:,} tokens", f"{budget.tokens:,}"
            return "tokens", EXHAUSTED.format(spent=spent, limit=limit)
        if elapsed >= budget.seconds:
            spent, limit = f"{elapsed:,.0f} s of wall time", f"{budget.seconds:,.0f} s"
            return "time", EXHAUSTED.format(spent=spent, limit=limit)
        return None

    def saw_model(self, model: str | None) -> None:
        """Remember a model the agent asked for (each once, in order)."""
        if model and model not in self.models and len(self.models) < ERRORS_CAP:
            self.models.append(model)

    def fail(self, error: str, *, provider: bool) -> None:
        """Record an error; a provider failure is also what the task report names."""
        error = redact(error, self.masked)
        self.errors.append(error)
        if provider:
            self.provider_error = error

    def record(self, exchange: Exchange, answer: Answer) -> None:
        """Add an answer's tokens, and its exchange to the log, dropping the oldest past the cap."""
        self.input_tokens += answer.input_tokens
        self.output_tokens += answer.output_tokens
        self.log.append(exchange)
        self.log_size += exchange.size
        while self.log_size > LOG_CAP and len(self.log) > 1:
            self.log_size -= self.log.popleft().size
            self.dropped += 1

    def snapshot(self) -> TaskUsage:
        """The record as it stands."""
        return TaskUsage(
            task_id=self.task_id,
            requests=self.requests,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            models=tuple(self.models),
            errors=tuple(self.errors),
            budget_exhausted=self.exhausted,
            budget_message=self.budget_message,
            provider_error=self.provider_error,
            exchanges=tuple(self.log),
            exchanges_dropped=self.dropped,
        )
