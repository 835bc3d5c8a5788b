"""Network policy per container: none, an internal network behind the egress proxy, or bridge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from config.errors import GantryError
from runner import egress
from runner.labels import DEFAULT_OWNER, KIND_NETWORK, KIND_PROXY, gantry_labels
from runner.sandbox import engine_call, remove_container

Mode = Literal["off", "limited", "full"]
PROXY_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY = "localhost,127.0.0.1,::1"
# Without an IP on the host side of the bridge, the host itself is unreachable from inside.
INTERNAL_OPTIONS = {"com.docker.network.bridge.inhibit_ipv4": "true"}
# Docker's embedded DNS forwards outside names to these; TEST-NET-1 goes nowhere, so a
# name lookup can carry no data out even if the engine tried (CVE-2024-29018).
SINKHOLE_DNS = ("192.0.2.1",)
# Lookups cannot succeed there; fail them at once instead of after libc's retries.
FAST_FAIL_DNS = ("timeout:1", "attempts:1")
PROXY_USER = "65534:65534"
PROXY_MEMORY = 128 * 1024**2
PROXY_PIDS = 64
PROXY_READY_S = 20.0


class NetworkSetupError(GantryError):
    """The network of a sandbox could not be prepared."""


@dataclass(frozen=True)
class NetworkPolicy:
    """One phase's network: `off`, `limited` (allow list, methods) or `full`."""

    mode: Mode = "off"
    allow: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass
class Attachment:
    """What a sandbox container needs for its policy, and what to remove afterwards."""

    network_mode: str
    env: dict[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    network_id: str | None = None
    proxy_id: str | None = None


def proxy_env(address: str, port: int = egress.LISTEN_PORT) -> dict[str, str]:
    """The variables that send HTTP(S) clients through the proxy."""
    url = f"http://{address}:{port}"
    return {name: url for name in PROXY_ENV_NAMES} | {"NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY}


def proxy_command(policy: NetworkPolicy, mapped: Mapping[str, str]) -> list[str]:
    """The proxy's command line for a policy (`mapped`: name → address:port, for tests)."""
    command = ["python3", "-c", proxy_source(), "--port", str(egress.LISTEN_PORT)]
    command += [arg for domain in policy.allow for arg in ("--allow", domain)]
    command += [arg for method in policy.methods for arg in ("--method", method)]
    command += [arg for name, target in mapped.items() for arg in ("--map", f"{name}={target}")]
    return command


def proxy_source() -> str:
    """The proxy's code, passed on its command line: no file to copy into a read-only root."""
    return Path(egress.__file__).read_text(encoding="utf-8")


def parse_decisions(logs: str) -> list[dict[str, Any]]:
    """The proxy's JSON decision lines (anything else is ignored)."""
    decisions = []
    for line in logs.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict) and "event" in item:
                decisions.append(item)
    return decisions


class Networks:
    """Builds and tears down the network side of sandboxes."""

    def __init__(
        self,
        client: docker.DockerClient,
        proxy_image: str,
        mapped: Mapping[str, str] | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> None:
        self.client = client
        self.proxy_image = proxy_image
        self.mapped = dict(mapped or {})
        self.owner = owner

    async def attach(
        self, policy: NetworkPolicy, task_id: str, repo: str, owner: str | None = None
    ) -> Attachment:
        """Prepare the network for one container under a policy."""
        if policy.mode == "off":
            return Attachment("none")
        if policy.mode == "full":
            return Attachment("bridge")
        return await self._limited(policy, task_id, repo, owner or self.owner)

    async def _limited(
        self, policy: NetworkPolicy, task_id: str, repo: str, owner: str
    ) -> Attachment:
        """An internal network with no host address, and the proxy as its only way out."""
        name = f"gantry-{uuid.uuid4().hex[:12]}"
        network = await engine_call(
            lambda: self.client.networks.create(
                name,
                driver="bridge",
                internal=True,
                options=INTERNAL_OPTIONS,
                labels=gantry_labels(task_id, repo, KIND_NETWORK, owner),
            )
        )
        attachment = Attachment(
            name, dns=SINKHOLE_DNS, dns_options=FAST_FAIL_DNS, network_id=network.id
        )
        try:
            proxy = await self._start_proxy(
                policy, network, gantry_labels(task_id, repo, KIND_PROXY, owner)
            )
            attachment.proxy_id = proxy.id
            address = proxy.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
            attachment.env = proxy_env(address)
            await self._wait_ready(proxy)
        except BaseException:
            await self.detach(attachment)
            raise
        return attachment

    async def _start_proxy(
        self, policy: NetworkPolicy, network: Network, labels: dict[str, str]
    ) -> Container:
        """The proxy container: unprivileged, read-only, on the task network and the bridge."""
        kwargs: dict[str, Any] = {
            "image": self.proxy_image,
            "command": proxy_command(policy, self.mapped),
            "labels": labels,
            "network": network.name,
            "user": PROXY_USER,
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": PROXY_MEMORY,
            "memswap_limit": PROXY_MEMORY,
            "pids_limit": PROXY_PIDS,
            "detach": True,
        }

        def start() -> Container:
            container = self.client.containers.create(**kwargs)
            self.client.networks.get("bridge").connect(container)
            container.start()
            container.reload()
            return container

        return await engine_call(start)

    async def _wait_ready(self, proxy: Container) -> None:
        """Wait until the proxy says it listens, or fail if it exits."""
        deadline = time.monotonic() + PROXY_READY_S
        while time.monotonic() < deadline:
            logs = await engine_call(lambda: proxy.logs().decode(errors="replace"))
            if egress.READY in logs:
                return
            await engine_call(proxy.reload)
            if proxy.status not in ("created", "running"):
                raise NetworkSetupError(f"the egress proxy exited: {logs[-500:]}")
            await asyncio.sleep(0.05)
        raise NetworkSetupError("the egress proxy did not start in time")

    async def decisions(self, attachment: Attachment) -> list[dict[str, Any]]:
        """What the proxy allowed and blocked so far (empty for `off` and `full`)."""
        if attachment.proxy_id is None:
            return []
        proxy_id = attachment.proxy_id
        logs = await engine_call(lambda: self.client.api.logs(proxy_id, stderr=False))
        return parse_decisions(bytes(logs).decode(errors="replace"))

    async def detach(self, attachment: Attachment) -> None:
        """Remove the proxy and the network (call after the sandbox container is gone)."""
        if attachment.proxy_id is not None:
            await remove_container(self.client, attachment.proxy_id)
        if attachment.network_id is not None:
            network_id = attachment.network_id

            def remove() -> None:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_network(network_id)

            await engine_call(remove)


def blocked(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the blocked attempts, for the task's report."""
    return [d for d in decisions if d.get("event") == "blocked"]
