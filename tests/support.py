"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# Built by scripts/base-image (the tag there must match).
TEST_BASE_IMAGE = "gantry-test-base:bookworm"


def docker_required() -> bool:
    """In CI a Docker-backed test may never skip: a missing engine is a failure."""
    return bool(os.environ.get("CI"))


@dataclass(frozen=True)
class Scrape:
    """One `/metrics` answer, parsed by prometheus_client's own parser."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def __call__(self, name: str, **labels: str) -> float:
        """A sample's value (KeyError when the series is missing: absent is not zero)."""
        return self.samples[(name, tuple(sorted(labels.items())))]

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every series of a sample name, by its labels."""
        return {labels: value for (n, labels), value in self.samples.items() if n == name}


def parse_scrape(text: str) -> Scrape:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(samples)


async def scrape(url: str) -> Scrape:
    """GET a `/metrics` URL: Prometheus' text format, parsed."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_scrape(await response.text())


def slowest_answer(url: str, stop: threading.Event) -> float:
    """GET `url` every 0.1 s until `stop` (a client of its own, off the server's loop); the
    slowest answer's seconds."""
    worst = 0.0
    while not stop.is_set():
        start = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 (a test URL)
            answer.read()
        worst = max(worst, time.monotonic() - start)
        time.sleep(0.1)
    return worst
