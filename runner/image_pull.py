"""Images that arrive by themselves: pulled once when missing, with progress in the task log.

The pure part reads the engine's pull events into log lines and its refusals into reports;
`ImagePuller` carries a pull out, shared by every task that waits for the same image.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.auth import resolve_index_name, resolve_repository_name
from docker.utils import parse_repository_tag
from requests.exceptions import RequestException

from config.errors import GantryError
from config.settings import RegistryLogin
from runner.sandbox import engine_call, human_bytes
from runner.tasklog import Redactor, TaskLog

PROGRESS_EVERY_S = 2.0
# A task waits this long for a pull (a registry that never answers must not hold it forever).
PULL_LIMIT_S = 1800.0
PHASE = "environment"
# Per-layer states worth a line; the rest ("Waiting", "Verifying Checksum", …) only add noise.
LAYER_DONE = ("Pull complete", "Already exists")
BUSY = ("Downloading", "Extracting")
CREDENTIALS_FIX = "set or correct its credentials in GANTRY_REGISTRY_AUTH (docs/images.md)"
NAME_FIX = "check the image name and tag in .github/gantry.yml (or GANTRY_DEFAULT_IMAGE)"
REACH_FIX = "the registry cannot be reached from the Docker engine's host (DNS, proxy, firewall)"
HINTS = (
    (("unauthorized", "denied", "authentication required", "no basic auth"), CREDENTIALS_FIX),
    (("not found", "manifest unknown", "name unknown", "does not exist"), NAME_FIX),
    (("connection refused", "no such host", "timeout", "unreachable", "no answer"), REACH_FIX),
)


class ImagePullError(GantryError):
    """An image is not on the host and the registry would not give it."""


def registry_of(image: str) -> str:
    """The registry host an image reference names (`docker.io` when it names none)."""
    repository, _ = parse_repository_tag(image)
    return str(resolve_repository_name(repository)[0])


def normalize_registry(name: str) -> str:
    """A registry key as operators write it (`https://index.docker.io/v1/`) → `docker.io`."""
    host = name.strip().removeprefix("https://").removeprefix("http://").split("/")[0]
    return str(resolve_index_name(host.lower()))


def login_for(image: str, logins: Mapping[str, RegistryLogin]) -> RegistryLogin | None:
    """The configured credentials of the image's registry, if any."""
    wanted = registry_of(image)
    return next((v for k, v in logins.items() if normalize_registry(k) == wanted), None)


def auth_config(login: RegistryLogin | None) -> dict[str, str] | None:
    """The engine API's `auth_config` (None: the host's own docker login, if any)."""
    if login is None:
        return None
    return {"username": login.username, "password": login.password.get_secret_value()}


def failure_report(image: str, answer: str, secrets: Iterable[str] = ()) -> str:
    """The report of a failed pull: the image, its registry, the registry's answer, a fix."""
    clean = Redactor(secrets)(answer.strip()) or "no answer"
    lower = clean.lower()
    fix = next((hint for words, hint in HINTS if any(w in lower for w in words)), "")
    registry = registry_of(image)
    text = f"could not pull image {image} from {registry}: the registry answered: {clean}"
    return f"{text} (fix: {fix})" if fix else text


def event_error(event: Mapping[str, Any]) -> str | None:
    """The error an engine pull event carries, if it is one."""
    if "error" not in event and "errorDetail" not in event:
        return None
    detail = event.get("errorDetail") or {}
    return str(event.get("error") or detail.get("message") or "unknown error")


@dataclass
class PullProgress:
    """Turns the engine's pull events into a few task-log lines (pure; the clock is given)."""

    image: str
    clock: Callable[[], float] = time.monotonic
    every_s: float = PROGRESS_EVERY_S
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    last: float = float("-inf")

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        """The lines one event deserves (often none)."""
        status = str(event.get("status") or "")
        layer = str(event.get("id") or "")
        if not status or event_error(event) is not None:
            return []
        if not layer or status.startswith(("Pulling from", "Digest:", "Status:")):
            return [f"[gantry] pull {self.image}: {status}"]
        if status in LAYER_DONE:
            self.layers.pop(layer, None)
            return [f"[gantry] pull {self.image}: layer {layer}: {status.lower()}"]
        detail = event.get("progressDetail") or {}
        if status in BUSY and isinstance(detail.get("total"), int):
            self.layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
            return self._summary()
        return []

    def _summary(self) -> list[str]:
        """At most one progress line every `every_s` seconds, over all busy layers."""
        now = self.clock()
        if now - self.last < self.every_s or not self.layers:
            return []
        self.last = now
        done = sum(current for current, _ in self.layers.values())
        total = sum(size for _, size in self.layers.values())
        return [
            f"[gantry] pull {self.image}: {len(self.layers)} layer(s) busy, "
            f"{human_bytes(done)} of {human_bytes(total)}"
        ]


@dataclass
class Flight:
    """One pull under way and the task logs that follow it."""

    logs: list[TaskLog] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def line(self, text: str) -> None:
        """One line into every follower's log (called from the pulling thread)."""
        for log in list(self.logs):
            log.line(PHASE, text)


class ImagePuller:
    """Makes sure images are on the engine; concurrent tasks needing one image pull it once.

    Only missing images are pulled: a tag already on the host is used as it is."""

    def __init__(
        self,
        client: docker.DockerClient,
        logins: Mapping[str, RegistryLogin] | None = None,
        limit_s: float = PULL_LIMIT_S,
    ) -> None:
        self.client = client
        self.logins = dict(logins or {})
        self.limit_s = limit_s
        self._flights: dict[str, Flight] = {}

    async def present(self, image: str) -> bool:
        """Whether the engine has the image (by name or id)."""
        try:
            await engine_call(lambda: self.client.images.get(image))
        except docker.errors.ImageNotFound:
            return False
        return True

    async def ensure(self, image: str, log: TaskLog) -> None:
        """Pull the image unless the engine has it; raise `ImagePullError` with the report."""
        if await self.present(image):
            return
        flight = self._join(image, log)
        assert flight.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(flight.task), self.limit_s)
        except TimeoutError:
            report = failure_report(image, f"no answer within {self.limit_s:.0f}s")
            log.line(PHASE, f"[gantry] {report}")
            raise ImagePullError(report) from None
        finally:
            with contextlib.suppress(ValueError):
                flight.logs.remove(log)

    def _join(self, image: str, log: TaskLog) -> Flight:
        """The pull of `image` under way, or a new one; the log follows it from now on."""
        login = login_for(image, self.logins)
        if login is not None:
            log.add_secrets([login.password.get_secret_value()])
        flight = self._flights.get(image)
        if flight is None:
            flight = self._flights[image] = Flight()
            flight.task = asyncio.create_task(self._pull(image, flight, login))
            log.line(PHASE, f"[gantry] {image} is not on this host: pulling it")
        else:
            log.line(PHASE, f"[gantry] {image} is being pulled for another task: waiting")
        flight.logs.append(log)
        return flight

    async def settle(self) -> None:
        """Wait until no pull is under way (their failures are for their waiters to report)."""
        tasks = [flight.task for flight in self._flights.values() if flight.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pull(self, image: str, flight: Flight, login: RegistryLogin | None) -> None:
        """The pull itself, in a thread; the entry goes when it ends, so a failure is retried."""
        secrets = [login.password.get_secret_value()] if login is not None else []
        try:
            answer = await asyncio.to_thread(self._stream, image, flight, auth_config(login))
        except (docker.errors.APIError, RequestException) as exc:
            answer = api_answer(exc)
        finally:
            self._flights.pop(image, None)
        if answer is not None:
            report = failure_report(image, answer, secrets)
            flight.line(f"[gantry] {report}")
            raise ImagePullError(report)
        flight.line(f"[gantry] pulled {image}")

    def _stream(self, image: str, flight: Flight, auth: dict[str, str] | None) -> str | None:
        """Thread body: follow the engine's events; the registry's refusal, or None."""
        progress = PullProgress(image)
        events = self.client.api.pull(image, stream=True, decode=True, auth_config=auth)
        for event in events:
            error = event_error(event)
            if error is not None:
                return error
            for line in progress.feed(event):
                flight.line(line)
        return None if self._has(image) else "the engine finished without the image"

    def _has(self, image: str) -> bool:
        """Blocking presence check for the thread."""
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    async def lookup(self, image: str) -> str:
        """The image's digest from its registry, without pulling (`gantry doctor`)."""
        auth = auth_config(login_for(image, self.logins))
        try:
            data = await asyncio.to_thread(self.client.images.get_registry_data, image, auth)
        except (docker.errors.APIError, RequestException) as exc:
            raise ImagePullError(failure_report(image, api_answer(exc))) from None
        return str(data.id)


def api_answer(exc: Exception) -> str:
    """The engine's words for a refused request (the registry's answer, relayed)."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)
