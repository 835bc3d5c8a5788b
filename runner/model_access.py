"""The model gateway as a worker runs it: where it listens, and where containers dial it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import docker

from config.settings import Settings
from gantry.metrics import Metrics
from gateway import Budget, ModelGateway, Providers
from runner.network import bridge_gateway_address

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class GatewayService:
    """A started gateway and the (address, port) a sandbox dials to reach it."""

    gateway: ModelGateway
    route: tuple[str, int]


async def listen_address(settings: Settings, client: docker.DockerClient | None) -> str:
    """`GATEWAY_HOST`, else the Docker bridge's host address (loopback without Docker)."""
    if settings.gateway_host:
        return settings.gateway_host
    if client is None:
        return LOOPBACK
    return await asyncio.to_thread(bridge_gateway_address, client)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, client: docker.DockerClient | None, metrics: Metrics | None = None
) -> AsyncIterator[GatewayService]:
    """Start the gateway for this worker's tasks; stop it (and every open token) after."""
    providers, ceilings = Providers.from_settings(settings), Budget.ceilings(settings)
    gateway = ModelGateway(providers, ceilings, metrics=metrics)
    host = await listen_address(settings, client)
    port = await gateway.start(host, settings.gateway_port)
    dial = settings.gateway_address or host
    log.info("model gateway on %s:%d (containers dial %s:%d)", host, port, dial, port)
    try:
        yield GatewayService(gateway, (dial, port))
    finally:
        await gateway.stop()
