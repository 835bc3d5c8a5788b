"""Prometheus metrics: one registry per process (a `Metrics`), the calls its parts make, the
task store read at scrape time, and `/metrics` on an internal listener of its own.

Labels hold only small fixed sets (outcomes, phases, states, providers, HTTP statuses): never
a repository, a user or a task id, whose number grows without bound."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from runner.results import PHASES, Conclusion, Phase, PhaseStatus, TaskResult

log = logging.getLogger(__name__)

PATH = "/metrics"
OTHER = "other"
# What the webhook answered, before anything was handled.
EDGE_OUTCOMES = (
    "accepted", "duplicate", "ignored", "pong", "forged", "malformed", "too_large", "busy",
    "too_slow",
)  # fmt: skip
# Any other refusal (400, 411, 415) is malformed.
REFUSALS = {401: "forged", 413: "too_large", 503: "busy", 408: "too_slow"}
# What a stored delivery led to once handled (bot.intake.Outcome), or its end after retries.
HANDLED_OUTCOMES = ("queued", "answered", "refused", "ignored", "failed")
PHASE_OUTCOMES = (PhaseStatus.DONE.value, PhaseStatus.FAILED.value)
CONCLUSIONS = tuple(conclusion.value for conclusion in Conclusion)
# runner.store.TaskState's values (a test holds them equal; this module imports no store).
TASK_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
PROVIDERS = ("openai", "anthropic")
CACHE_RESULTS = ("hit", "miss")
TOKEN_DIRECTIONS = ("input", "output")
# The webhook answers in milliseconds (it stores and returns); phases take seconds to an hour.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PHASE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


def bounded(value: str, allowed: Iterable[str]) -> str:
    """`value` when it is one of `allowed`, else `other`: a label never grows a new series."""
    return value if value in allowed else OTHER


def refusal_outcome(status: int) -> str:
    """The outcome of a delivery refused at the edge with this HTTP status."""
    return REFUSALS.get(status, "malformed")


def status_label(status: int) -> str:
    """An HTTP status as a label: the code when it is one, else `other`."""
    return str(status) if 100 <= status <= 599 else OTHER


# Tasks per state, and when (epoch seconds) the oldest queued task was created.
TaskCounts = tuple[Mapping[str, int], float | None]
CountTasks = Callable[[], Awaitable[TaskCounts]]


@dataclass(eq=False)  # registries key their collectors by identity
class TaskStateCollector:
    """Tasks by state, queue depth and the oldest queued task's age, from the store.

    A collector's `collect` is synchronous and the store is not: the scrape awaits `refresh`
    (one cheap grouped count) just before the registry is rendered."""

    count: CountTasks
    clock: Callable[[], float] = time.time
    latest: TaskCounts = ({}, None)

    async def refresh(self) -> None:
        self.latest = await self.count()

    def collect(self) -> Iterable[Metric]:
        by_state, since = self.latest
        tasks = GaugeMetricFamily("gantry_tasks", "Tasks in the store by state.", labels=["state"])
        for state in TASK_STATES:
            tasks.add_metric([state], by_state.get(state, 0))
        yield tasks
        queued = by_state.get("queued", 0)
        yield GaugeMetricFamily(
            "gantry_queue_depth", "Tasks waiting for a worker (queued in the store).", queued
        )
        age = max(0.0, self.clock() - since) if since is not None else 0.0
        yield GaugeMetricFamily(
            "gantry_queue_oldest_age_seconds",
            "How long the oldest queued task has waited (0 when none waits).",
            age,
        )


class Metrics:
    """The metrics of one process (or one app in a test), in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks: TaskStateCollector | None = None
        # Where `serving` listens, once it does (host, port).
        self.address: tuple[str, int] | None = None
        self._declare()
        self._zero()

    def _declare(self) -> None:
        registry = self.registry
        self.webhook_deliveries = Counter(
            "gantry_webhook_deliveries", "Deliveries answered by the webhook, by outcome.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.webhook_latency = Histogram(
            "gantry_webhook_latency_seconds", "Time to answer a delivery (verify, store, reply).",
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.deliveries_handled = Counter(
            "gantry_deliveries_handled", "Stored deliveries handled, by what they led to.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.delivery_retries = Counter(
            "gantry_delivery_retries", "Deliveries tried again after a GitHub failure.",
            registry=registry,
        )  # fmt: skip
        self.phase_seconds = Histogram(
            "gantry_phase_duration_seconds", "Pipeline phase durations, by phase and outcome.",
            ["phase", "outcome"], buckets=PHASE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.tasks_finished = Counter(
            "gantry_tasks_finished", "Task runs ended, by conclusion.", ["conclusion"],
            registry=registry,
        )  # fmt: skip
        self.cache_lookups = Counter(
            "gantry_cache_lookups", "Environment cache lookups, by result.", ["result"],
            registry=registry,
        )  # fmt: skip
        self.gateway_requests = Counter(
            "gantry_gateway_requests", "Model gateway requests, by provider and HTTP status.",
            ["provider", "status"], registry=registry,
        )  # fmt: skip
        self.gateway_tokens = Counter(
            "gantry_gateway_tokens", "Model tokens through the gateway, by provider and direction.",
            ["provider", "direction"], registry=registry,
        )  # fmt: skip

    def _zero(self) -> None:
        """Every known series from 0, so that `rate()` and `absent()` work before the first."""
        for outcome in EDGE_OUTCOMES:
            self.webhook_deliveries.labels(outcome)
        for outcome in HANDLED_OUTCOMES:
            self.deliveries_handled.labels(outcome)
        for conclusion in CONCLUSIONS:
            self.tasks_finished.labels(conclusion)
        for result in CACHE_RESULTS:
            self.cache_lookups.labels(result)
        for provider in PROVIDERS:
            for direction in TOKEN_DIRECTIONS:
                self.gateway_tokens.labels(provider, direction)

    # -- the calls the parts make -----------------------------------------------------------

    def delivery_answered(self, outcome: str) -> None:
        """The webhook answered a delivery (accepted, refused, ...)."""
        self.webhook_deliveries.labels(bounded(outcome, EDGE_OUTCOMES)).inc()

    def delivery_handled(self, outcomes: Iterable[str]) -> None:
        """A stored delivery was handled; each thing it led to (none: ignored)."""
        for outcome in list(outcomes) or ["ignored"]:
            self.deliveries_handled.labels(bounded(str(outcome), HANDLED_OUTCOMES)).inc()

    def delivery_failed(self) -> None:
        """A stored delivery was given up on, after its retries (or as unprocessable)."""
        self.deliveries_handled.labels("failed").inc()

    def delivery_retried(self) -> None:
        self.delivery_retries.inc()

    def phase_ended(self, phase: Phase) -> None:
        """A phase report; one that ended (done or failed, with its time) is observed."""
        if phase.seconds is None or phase.status.value not in PHASE_OUTCOMES:
            return
        name = bounded(phase.name, PHASES)
        self.phase_seconds.labels(name, phase.status.value).observe(phase.seconds)

    def task_finished(self, result: TaskResult) -> None:
        self.tasks_finished.labels(bounded(result.conclusion.value, CONCLUSIONS)).inc()

    def cache_lookup(self, hit: bool) -> None:
        self.cache_lookups.labels("hit" if hit else "miss").inc()

    def gateway_request(self, provider: str, status: int) -> None:
        """A request the gateway answered (forwarded or refused)."""
        self.gateway_requests.labels(bounded(provider, PROVIDERS), status_label(status)).inc()

    def gateway_usage(self, provider: str, input_tokens: int, output_tokens: int) -> None:
        """The tokens one answer spent, as the ledger counted them."""
        label = bounded(provider, PROVIDERS)
        self.gateway_tokens.labels(label, "input").inc(max(0, input_tokens))
        self.gateway_tokens.labels(label, "output").inc(max(0, output_tokens))

    # -- wiring -------------------------------------------------------------------------------

    def watch_tasks(self, count: CountTasks) -> None:
        """Report the task store's states at every scrape (once per registry)."""
        if self.tasks is None:
            self.tasks = TaskStateCollector(count)
            self.registry.register(self.tasks)

    def timed(self, handler: Handler) -> Handler:
        """The webhook handler, its latency observed whatever it answers."""

        async def timed_handler(request: web.Request) -> web.StreamResponse:
            with self.webhook_latency.time():
                return await handler(request)

        return timed_handler

    def reporter(self) -> PhaseMetrics:
        """A pipeline reporter that observes phase durations and task conclusions."""
        return PhaseMetrics(self)

    async def scrape(self, request: web.Request) -> web.Response:
        """`GET /metrics`: the store read now, then the registry in the format asked for."""
        if self.tasks is not None:
            try:
                await self.tasks.refresh()
            except Exception:  # a store that fails must not take the other metrics with it
                log.exception("metrics: reading the task store failed")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    def app(self) -> web.Application:
        """An app that serves only `/metrics`."""
        app = web.Application()
        app.router.add_get(PATH, self.scrape)
        return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METRICS = web.AppKey("metrics", Metrics)


@dataclass
class PhaseMetrics:
    """A `runner.pipeline.Reporter` that feeds the phase histogram and the conclusions."""

    metrics: Metrics

    async def started(self) -> None:
        return None

    async def phase(self, phase: Phase) -> None:
        self.metrics.phase_ended(phase)

    async def finished(self, result: TaskResult) -> None:
        self.metrics.task_finished(result)


@contextlib.asynccontextmanager
async def serving(metrics: Metrics, bind: tuple[str, int] | None) -> AsyncIterator[int | None]:
    """`/metrics` on its own listener at `bind` (None: not served); the bound port."""
    if bind is None:
        yield None
        return
    host, port = bind
    runner = web.AppRunner(metrics.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        metrics.address = (host, int(runner.addresses[0][1]))
        log.info("metrics on http://%s:%d%s", *metrics.address, PATH)
        yield metrics.address[1]
    finally:
        metrics.address = None
        await runner.cleanup()
