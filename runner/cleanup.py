"""Sweeping up: labelled containers and networks of tasks that are not running, expired images."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import docker
import docker.errors

from runner.cache import EnvironmentCache
from runner.labels import MANAGED_FILTER, OWNER, task_of
from runner.sandbox import engine_call, remove_container

SWEEP_INTERVAL_S = 300.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """How many objects one sweep removed."""

    containers: int
    networks: int
    images: int


def orphans(labelled: Mapping[str, Mapping[str, str]], live: Collection[str]) -> list[str]:
    """Ids of objects (id → labels) whose task is not live; cache images have no task."""
    return [
        object_id
        for object_id, labels in labelled.items()
        if (task := task_of(labels)) and task not in live
    ]


def label_filters(only: Mapping[str, str]) -> dict[str, list[str]]:
    """Gantry's mark plus any narrowing labels (one worker's, one repository's)."""
    return {"label": [MANAGED_FILTER, *(f"{k}={v}" for k, v in only.items())]}


async def sweep(
    client: docker.DockerClient,
    live: Collection[str],
    cache: EnvironmentCache,
    only: Mapping[str, str] | None = None,
) -> SweepReport:
    """Remove this owner's containers, then networks, of tasks not in `live`; collect images.

    At start-up `live` is empty (nothing runs yet); later it is the tasks running now. Only
    objects labelled with `cache.owner` (this deployment) are considered.
    """
    filters = label_filters({OWNER: cache.owner, **(only or {})})
    containers = await engine_call(lambda: client.api.containers(all=True, filters=filters))
    doomed = orphans({c["Id"]: c.get("Labels") or {} for c in containers}, live)
    for container_id in doomed:
        await remove_container(client, container_id)
    networks = await engine_call(lambda: client.api.networks(filters=filters))
    lost = orphans({n["Id"]: n.get("Labels") or {} for n in networks}, live)
    for network_id in lost:
        await _remove_network(client, network_id)
    images = await cache.collect_expired()
    return SweepReport(len(doomed), len(lost), images)


async def _remove_network(client: docker.DockerClient, network_id: str) -> None:
    """Remove a network, ignoring one that is already gone."""

    def remove() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(network_id)

    await engine_call(remove)


async def sweep_forever(
    client: docker.DockerClient,
    live: Callable[[], Awaitable[Collection[str]]],
    cache: EnvironmentCache,
    interval_s: float = SWEEP_INTERVAL_S,
) -> None:
    """Sweep now and every `interval_s`; one failed sweep is logged, never fatal."""
    while True:
        try:
            report = await sweep(client, await live(), cache)
            if report.containers or report.networks or report.images:
                logger.info("swept %s", report)
        except Exception:  # the engine, or the store behind `live`: the next sweep may do
            logger.exception("sweep failed; trying again in %.0fs", interval_s)
        await asyncio.sleep(interval_s)
