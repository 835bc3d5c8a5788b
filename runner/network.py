"""Network policy per container: none, an internal network behind the egress proxy, or out.

The way out of every sandbox is Gantry's own bridge network, `gantry-outward` (one per
engine, made on first use and again if pruned, never removed by a task's cleanup): the
internet and the host's addresses, but no other container, since inter-container
communication is off on it (`enable_icc=false`). Containers under `full` sit on it, and so
does each egress proxy's outward leg: on Docker's default bridge (ICC on) a task could
connect to any port of another task's containers, or of anything else there.

The model gateway (on the host) is reachable under every mode when `attach` is given its
address: directly from the outward network under `full`, through the proxy's raw relay
otherwise; under `off` that relay is the only thing the container can reach. A relay attached
with `hold_relay` listens only from `open_relay` on (after maintenance); `close_relay`
switches it off for good when the agent phase ends (under `full` the gateway stays reachable,
and only the revoked token keeps it shut).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import signal
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network
from requests.exceptions import RequestException

from config.errors import GantryError
from runner import egress
from runner.labels import (
    DEFAULT_OWNER,
    KIND,
    KIND_NETWORK,
    KIND_PROXY,
    MANAGED,
    MANAGED_FILTER,
    gantry_labels,
)
from runner.sandbox import created, engine_call, remove_container
from runner.task_ca import TaskTls, issue_task_tls

Mode = Literal["off", "limited", "full"]
PROXY_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY = "localhost,127.0.0.1,::1"
# Without an IP on the host side of the bridge, the host itself is unreachable from inside.
INTERNAL_OPTIONS = {"com.docker.network.bridge.inhibit_ipv4": "true"}
# Docker's embedded DNS forwards outside names to the container's DNS server. That server is
# the last address of the task's own internal network: nothing holds it and no route leads
# off that network, so a lookup carries no data out on any host (CVE-2024-29018). A fixed
# "unused" address will not do: TEST-NET-1's 192.0.2.1 is a real gateway on some hosts.
# Lookups cannot succeed there; fail them at once instead of after libc's retries.
FAST_FAIL_DNS = ("timeout:1", "attempts:1")
PROXY_USER = "65534:65534"
PROXY_MEMORY = 128 * 1024**2
PROXY_PIDS = 64
PROXY_READY_S = 20.0
# The proxy's own log on the host disk: its decisions stay far below one file (see
# egress.Journal); the rotation bounds whatever else it might print (Python's stderr).
PROXY_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "2"}}
# Lines read back: more than the proxy ever records (egress.MAX_RECORDS, then a count that
# doubles), so nothing is lost, yet a bounded read whatever is in the log.
DECISIONS_TAIL = 2 * egress.MAX_RECORDS
# Characters of a followed log kept while waiting for a line (the proxy's lines are short).
FOLLOWED_KEPT = 4096
RELAY_SIGNAL_S = 20.0
# Docker's default bridge: only read (the host's address on it, where the gateway listens by
# default, and its MTU); no Gantry container joins it.
BRIDGE = "bridge"
# The engine's one network out, shared by every task and deployment: containers on it reach
# the internet and the host, never each other. No owner or task label: no sweep removes it.
OUTWARD = "gantry-outward"
# Its host interface, by name: a host firewall rule can let it reach the gateway's port.
OUTWARD_INTERFACE = "gantry-outward"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
INTERFACE_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
OUTWARD_LABELS = {MANAGED: "1", KIND: KIND_NETWORK}


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
    # The per-task CA the container must trust (methods restricted: HTTPS is intercepted).
    ca_pem: bytes | None = None
    # Where the agent reaches the model gateway, when `attach` was given one.
    gateway_url: str | None = None
    # Networks the container joins besides `network_mode` (the bridge, under `full` with
    # service containers on the task's own network).
    extra_networks: tuple[str, ...] = ()
    # The proxy still starting (`attach(..., wait=False)`); `Networks.ready` waits for it.
    starting: asyncio.Future[None] | None = None
    # The gateway relay listens only once `Networks.open_relay` is called.
    relay_held: bool = False


def proxy_env(address: str, port: int = egress.LISTEN_PORT) -> dict[str, str]:
    """The variables that send HTTP(S) clients through the proxy (its own address, with the
    gateway relay, directly)."""
    url = f"http://{address}:{port}"
    direct = f"{NO_PROXY},{address}"
    return {name: url for name in PROXY_ENV_NAMES} | {"NO_PROXY": direct, "no_proxy": direct}


def proxy_command(
    policy: NetworkPolicy,
    mapped: Mapping[str, str],
    gateway: tuple[str, int] | None = None,
    held: bool = False,
) -> list[str]:
    """The proxy's command line (`mapped`: name → address:port, for tests).

    Only `limited` runs the proxy with an allow list: under `off` only the relay to the
    gateway listens, whatever the config lists for other phases.
    """
    # Under `off` nothing listens but the relay: no proxy port answers at all.
    port = egress.LISTEN_PORT if policy.mode == "limited" else 0
    command = ["python3", "-c", proxy_source(), "--port", str(port)]
    if policy.mode == "limited":
        command += [arg for domain in policy.allow for arg in ("--allow", domain)]
        command += [arg for method in policy.methods for arg in ("--method", method)]
        command += [arg for name, target in mapped.items() for arg in ("--map", f"{name}={target}")]
    if gateway is not None:
        command += ["--relay", f"{egress.RELAY_PORT}={gateway[0]}:{gateway[1]}"]
        command += ["--relay-held"] if held else []
    return command


def intercepts(policy: NetworkPolicy) -> bool:
    """Whether HTTPS must be opened to hold the method restriction."""
    return policy.mode == "limited" and bool(policy.methods) and bool(policy.allow)


def proxy_environment(tls: TaskTls | None, upstream_ca: bytes | None) -> dict[str, str]:
    """The proxy's environment: the interception leaf, and (tests only) an upstream CA."""
    env = {}
    if tls is not None:
        env[egress.TLS_ENV] = tls.proxy_pem
    if upstream_ca is not None:
        env[egress.UPSTREAM_CA_ENV] = upstream_ca.decode("ascii")
    return env


def sinkhole_address(subnet: str) -> str:
    """The last usable address of a network: nothing holds it, so DNS sent there dies."""
    network = ipaddress.ip_network(subnet)
    return str(network.broadcast_address - 1)


def gateway_url(address: str, port: int) -> str:
    """The URL of the model gateway as the container sees it."""
    return f"http://{address}:{port}"


def bridge_gateway_address(client: docker.DockerClient) -> str:
    """The host's address on Docker's default bridge, where containers reach host services."""
    config = client.networks.get(BRIDGE).attrs["IPAM"]["Config"][0]
    # The engine leaves Gateway out for the default bridge; it is the subnet's first address.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


def outward_network(client: docker.DockerClient) -> str:
    """The id of the engine's outward network, made if missing (blocking).

    Looked up on every use, as a `docker network prune` removes it whenever no container is
    on it. Two makers at once: the engine refuses the second name (`check_duplicate`); if an
    old engine let both through, the oldest is taken (either would do: both have ICC off)."""
    found = _outward(client)
    if found is not None:
        return found
    options = {ICC_OPTION: "false", INTERFACE_OPTION: OUTWARD_INTERFACE}
    with contextlib.suppress(docker.errors.APIError):  # no default bridge: the engine's MTU
        mtu = (client.api.inspect_network(BRIDGE).get("Options") or {}).get(MTU_OPTION)
        options |= {MTU_OPTION: str(mtu)} if mtu else {}  # the engine's `mtu` setting
    with contextlib.suppress(docker.errors.APIError):  # made by someone else meanwhile
        client.api.create_network(
            OUTWARD, driver="bridge", options=options, labels=OUTWARD_LABELS, check_duplicate=True
        )
    found = _outward(client)
    if found is None:
        raise NetworkSetupError(
            f"could not make the network {OUTWARD} with {ICC_OPTION}=false (is a network of "
            "that name, but not Gantry's, on the engine?)"
        )
    return found


def _outward(client: docker.DockerClient) -> str | None:
    """The outward network's id, if the engine has it: Gantry's, by name, with ICC off."""
    filters = {"name": [OUTWARD], "label": [MANAGED_FILTER, f"{KIND}={KIND_NETWORK}"]}
    rows = client.api.networks(filters=filters)
    ours = [
        row
        for row in rows
        if row.get("Name") == OUTWARD  # the engine's filter matches parts of names too
        and row.get("Driver") == "bridge"
        and not row.get("Internal")
        and (row.get("Options") or {}).get(ICC_OPTION) == "false"
    ]
    if not ours:
        return None
    return str(min(ours, key=lambda row: (str(row.get("Created")), str(row["Id"])))["Id"])


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
        upstream_ca: bytes | None = None,
    ) -> None:
        self.client = client
        self.proxy_image = proxy_image
        self.mapped = dict(mapped or {})
        self.owner = owner
        # Tests only: a CA the proxy trusts upstream besides its system bundle.
        self.upstream_ca = upstream_ca

    async def attach(
        self,
        policy: NetworkPolicy,
        task_id: str,
        repo: str,
        owner: str | None = None,
        gateway: tuple[str, int] | None = None,
        services: bool = False,
        *,
        wait: bool = True,
        hold_relay: bool = False,
    ) -> Attachment:
        """Prepare the network for one container under a policy (and the gateway, if given).

        With `services`, the container is always on an internal network of the task's own,
        where its service containers join it (under `full`, it is on the outward one as well).
        With `wait` off, a proxy that only relays to the gateway (`off`: nothing in the
        container's own settings names it) goes on starting while the caller starts its
        container; `ready()` must be awaited before anything in the container may use it.
        With `hold_relay`, the gateway relay listens only from `open_relay` on."""
        labels = gantry_labels(task_id, repo, KIND_NETWORK, owner or self.owner)
        if policy.mode == "full":
            url = gateway_url(*gateway) if gateway is not None else None
            outward = await self._outward()
            if not services:
                return Attachment(outward, gateway_url=url)
            network = await self._create_network(labels)
            return Attachment(
                str(network.name), network_id=network.id, gateway_url=url, extra_networks=(outward,)
            )
        if policy.mode == "off" and gateway is None:
            return (await self._isolated(labels))[1] if services else Attachment("none")
        wait = wait or policy.mode != "off"
        return await self._internal(
            policy, task_id, repo, owner or self.owner, gateway, wait, hold_relay
        )

    async def _outward(self) -> str:
        """The engine's outward network (its id), made if missing."""
        return await engine_call(lambda: outward_network(self.client))

    async def ready(self, attachment: Attachment) -> None:
        """Wait until the attachment's proxy listens (at once when it was waited for)."""
        if attachment.starting is not None:
            await attachment.starting

    async def _isolated(self, labels: dict[str, str]) -> tuple[Network, Attachment]:
        """An internal network with no host address and no way out (DNS sinkholed)."""
        network = await self._create_network(labels)
        subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
        return network, Attachment(
            str(network.name),
            dns=(sinkhole_address(subnet),),
            dns_options=FAST_FAIL_DNS,
            network_id=network.id,
        )

    async def _internal(
        self,
        policy: NetworkPolicy,
        task_id: str,
        repo: str,
        owner: str,
        gateway: tuple[str, int] | None,
        wait: bool,
        hold_relay: bool = False,
    ) -> Attachment:
        """An internal network with no host address, and the proxy as its only way out."""
        outward = await self._outward()
        network, attachment = await self._isolated(
            gantry_labels(task_id, repo, KIND_NETWORK, owner)
        )
        try:
            tls = issue_task_tls(task_id, policy.allow) if intercepts(policy) else None
            attachment.ca_pem = tls.ca_pem if tls is not None else None
            labels = gantry_labels(task_id, repo, KIND_PROXY, owner)
            held = hold_relay and gateway is not None
            attachment.relay_held = held
            command = proxy_command(policy, self.mapped, gateway, held)
            environment = proxy_environment(tls, self.upstream_ca)
            start = self._proxy(
                attachment, policy, command, environment, (network, outward), labels, gateway
            )
            if wait:
                await start
            else:
                attachment.starting = asyncio.ensure_future(start)
        except BaseException:
            await self.detach(attachment)
            raise
        return attachment

    async def _proxy(
        self,
        attachment: Attachment,
        policy: NetworkPolicy,
        command: list[str],
        environment: dict[str, str],
        networks: tuple[Network, str],
        labels: dict[str, str],
        gateway: tuple[str, int] | None,
    ) -> None:
        """Start the attachment's proxy (on the task's network and the outward one) and wait
        until it listens."""
        network = networks[0]
        proxy = await self._start_proxy(command, environment, networks, labels)
        attachment.proxy_id = proxy.id
        address = proxy.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        if policy.mode == "limited":
            attachment.env = proxy_env(address)
        if gateway is not None:
            attachment.gateway_url = gateway_url(address, egress.RELAY_PORT)
        await self._wait_ready(proxy)

    async def open_relay(self, attachment: Attachment) -> None:
        """Let a held gateway relay listen, and wait until it does (not held: nothing to do)."""
        if not attachment.relay_held or attachment.proxy_id is None:
            return
        await self.ready(attachment)
        await self._signal(attachment.proxy_id, egress.OPEN_RELAYS, egress.RELAYS_OPEN, "open")
        attachment.relay_held = False

    async def close_relay(self, attachment: Attachment) -> None:
        """Switch the gateway relay off for good and wait until it is (no relay: nothing to
        do). The proxy port of `limited` goes on serving; under `off` nothing listens after."""
        if attachment.gateway_url is None or attachment.proxy_id is None:
            return
        await self.ready(attachment)
        await self._signal(attachment.proxy_id, egress.CLOSE_RELAYS, egress.RELAYS_CLOSED, "close")
        attachment.gateway_url = None

    async def _signal(self, proxy_id: str, sig: signal.Signals, line: str, what: str) -> None:
        """Send the proxy a signal and wait until its log says it acted on it."""
        await engine_call(lambda: self.client.api.kill(proxy_id, signal=sig.name))
        await self._wait_for(proxy_id, line, RELAY_SIGNAL_S, f"{what} its relay")

    async def _create_network(self, labels: dict[str, str]) -> Network:
        """A fresh internal bridge network without a host address, its IPAM read back."""
        name = f"gantry-{uuid.uuid4().hex[:12]}"

        def create() -> Network:
            network = self.client.networks.create(
                name, driver="bridge", internal=True, options=INTERNAL_OPTIONS, labels=labels
            )
            network.reload()
            return network

        return await engine_call(create)

    async def _start_proxy(
        self,
        command: list[str],
        environment: dict[str, str],
        networks: tuple[Network, str],
        labels: dict[str, str],
    ) -> Container:
        """The proxy container: unprivileged, read-only, on the task network and the outward
        one (where no other container reaches its ports)."""
        network, outward = networks
        kwargs: dict[str, Any] = {
            "image": self.proxy_image,
            "command": command,
            "environment": environment,
            "labels": labels,
            "network": network.name,
            "user": PROXY_USER,
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": PROXY_MEMORY,
            "memswap_limit": PROXY_MEMORY,
            "pids_limit": PROXY_PIDS,
            "log_config": PROXY_LOG_CONFIG,
            "detach": True,
        }

        def start() -> Container:
            container = self.client.containers.create(**kwargs)
            self.client.networks.get(outward).connect(container)
            container.start()
            container.reload()
            return container

        return await created(self.client, start)

    async def _wait_ready(self, proxy: Container) -> None:
        """Wait until the proxy says it listens, or fail if it exits."""
        await self._wait_for(str(proxy.id), egress.READY, PROXY_READY_S, "start")

    async def _wait_for(self, proxy_id: str, line: str, limit_s: float, what: str) -> None:
        """Wait until the proxy's log has `line`, or fail if it exits or takes too long.

        The log is followed as the engine writes it (no polling interval to wait out); the
        stream ends only when the proxy exits."""
        stream = await engine_call(
            lambda: self.client.api.logs(proxy_id, stream=True, follow=True, tail=DECISIONS_TAIL)
        )
        try:
            found, logs = await asyncio.wait_for(
                asyncio.to_thread(_read_until, stream, line), limit_s
            )
        except TimeoutError:
            raise NetworkSetupError(f"the egress proxy did not {what} in time") from None
        finally:
            stream.close()  # a thread still reading (timeout, cancel) sees its stream end
        if not found:
            raise NetworkSetupError(f"the egress proxy exited: {logs[-500:]}")

    async def decisions(self, attachment: Attachment) -> list[dict[str, Any]]:
        """What the proxy allowed and blocked so far (empty for `off` and `full`)."""
        if attachment.proxy_id is None:
            return []
        proxy_id = attachment.proxy_id
        logs = await engine_call(
            lambda: self.client.api.logs(proxy_id, stderr=False, tail=DECISIONS_TAIL)
        )
        return parse_decisions(bytes(logs).decode(errors="replace"))

    async def detach(self, attachment: Attachment) -> None:
        """Remove the proxy and the network (call after the sandbox container is gone)."""
        starting = attachment.starting
        if starting is not None and not starting.done():
            starting.cancel()
        if starting is not None:
            # Cancelled mid-start, the proxy container it made is removed with it (`created`).
            await asyncio.wait([starting])
            if not starting.cancelled():
                starting.exception()  # retrieved: the caller of `ready` saw it, if anyone
        if attachment.proxy_id is not None:
            await remove_container(self.client, attachment.proxy_id)
        if attachment.network_id is not None:
            network_id = attachment.network_id

            def remove() -> None:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_network(network_id)

            await engine_call(remove)


def _read_until(stream: Iterable[bytes], line: str) -> tuple[bool, str]:
    """Thread body: read a followed log until it holds `line` (True) or ends (False)."""
    text, decoder = "", codecs.getincrementaldecoder("utf-8")("replace")
    with contextlib.suppress(docker.errors.APIError, RequestException, OSError, ValueError):
        for chunk in stream:
            text += decoder.decode(chunk)
            if line in text:
                return True, text
            text = text[-FOLLOWED_KEPT:]  # enough for a line cut in two, and for an error
    return line in text, text


def blocked(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the blocked attempts, for the task's report, and how many more went unrecorded."""
    found = [d for d in decisions if d.get("event") == "blocked"]
    counts = [d.get("count") for d in decisions if d.get("event") == egress.UNRECORDED]
    more = max((c for c in counts if isinstance(c, int)), default=0)
    if more:
        reason = f"at least {more} more refused requests (not recorded: the log is full)"
        found.append({"event": "blocked", "method": "", "target": "", "reason": reason})
    return found
