"""The environment cache: images committed after setup, keyed by everything setup depends on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import docker
import docker.errors

from config.repo_config import CONFIG_SCHEMA_VERSION
from runner.labels import (
    DEFAULT_OWNER,
    KIND,
    KIND_CACHE,
    MANAGED_FILTER,
    OWNER,
    REPO,
    gantry_labels,
)
from runner.sandbox import engine_call

CACHE_REPOSITORY = "gantry-cache"
KEY_LABEL = "gantry.cache.key"
EXPIRES_LABEL = "gantry.cache.expires"
INPUT_LABEL_PREFIX = "gantry.cache.input."
KEY_VERSION = "gantry-cache-v2"

Clock = Callable[[], float]


@dataclass(frozen=True)
class CacheInputs:
    """What a cached environment depends on; any change is a different key."""

    repo: str
    base_image_id: str
    setup: tuple[str, ...]
    maintenance: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    secret_versions: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = CONFIG_SCHEMA_VERSION
    languages: Mapping[str, str] = field(default_factory=dict)
    extra_ca_digest: str = ""
    # The deployment: two Gantry instances on one engine never share (or remove) an image.
    owner: str = DEFAULT_OWNER


def _digest(value: object) -> str:
    """SHA-256 of canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(inputs: CacheInputs) -> str:
    """A stable hash of the inputs (the repository too: the image holds its checkout)."""
    return _digest(
        {
            "v": KEY_VERSION,
            "repo": inputs.repo.lower(),
            "base": inputs.base_image_id,
            "setup": list(inputs.setup),
            "maintenance": list(inputs.maintenance),
            "env": dict(inputs.env),
            "secrets": dict(inputs.secret_versions),
            "schema": inputs.schema_version,
            "languages": dict(inputs.languages),
            "ca": inputs.extra_ca_digest,
            "owner": inputs.owner,
        }
    )


def cache_labels(inputs: CacheInputs, key: str, expires_at: float) -> dict[str, str]:
    """Labels of a cache image: Gantry's own, the key, the expiry, and a digest of each input."""
    parts = {
        "base": inputs.base_image_id,
        "setup": _digest(list(inputs.setup)),
        "maintenance": _digest(list(inputs.maintenance)),
        "env": _digest(dict(inputs.env)),
        "secrets": _digest(dict(inputs.secret_versions)),
        "schema": str(inputs.schema_version),
        "languages": _digest(dict(inputs.languages)),
        "ca": inputs.extra_ca_digest or "none",
    }
    labels = gantry_labels("", inputs.repo.lower(), KIND_CACHE, inputs.owner)
    labels |= {KEY_LABEL: key, EXPIRES_LABEL: str(int(expires_at))}
    return labels | {INPUT_LABEL_PREFIX + name: value for name, value in parts.items()}


def image_ref(key: str) -> str:
    """The tag of the image for a key."""
    return f"{CACHE_REPOSITORY}:{key}"


def is_expired(labels: Mapping[str, str] | None, now: float) -> bool:
    """Whether a cache image's expiry has passed (a missing or bad label counts as expired)."""
    try:
        return float((labels or {})[EXPIRES_LABEL]) <= now
    except (KeyError, ValueError):
        return True


class EnvironmentCache:
    """Cache images in the engine; a per-key lock makes concurrent misses build once."""

    def __init__(
        self, client: docker.DockerClient, clock: Clock = time.time, owner: str = DEFAULT_OWNER
    ) -> None:
        self.client = client
        self.clock = clock
        self.owner = owner
        self._locks: dict[str, asyncio.Lock] = {}

    async def lookup(self, key: str) -> str | None:
        """The image id for a key, or None; an expired image is removed and misses."""
        try:
            image = await engine_call(lambda: self.client.images.get(image_ref(key)))
        except docker.errors.ImageNotFound:
            return None
        if (image.labels or {}).get(OWNER) != self.owner:
            return None  # another deployment's (the key has the owner in it: never by chance)
        if is_expired(image.labels, self.clock()):
            await self._remove(image_ref(key))
            return None
        return str(image.id)

    @contextlib.asynccontextmanager
    async def building(self, key: str) -> AsyncIterator[None]:
        """Hold the key's lock: look up again inside, build only if still missing."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield

    def labels_for(self, inputs: CacheInputs, key: str, ttl_s: float) -> dict[str, str]:
        """The labels of a new image for these inputs, expiring `ttl_s` from now."""
        return cache_labels(inputs, key, self.clock() + ttl_s)

    async def drop_repo(self, repo: str) -> int:
        """`reset-cache`: remove every cache image of a repository; returns how many."""
        filters = {"label": [*self._mine(), f"{REPO}={repo.lower()}"]}
        images = await engine_call(lambda: self.client.images.list(filters=filters))
        for image in images:
            await self._remove(str(image.id))
        return len(images)

    async def collect_expired(self) -> int:
        """Remove every expired cache image; returns how many."""
        filters = {"label": self._mine()}
        images = await engine_call(lambda: self.client.images.list(filters=filters))
        expired = [image for image in images if is_expired(image.labels, self.clock())]
        for image in expired:
            await self._remove(str(image.id))
        return len(expired)

    def _mine(self) -> list[str]:
        """Label filters of this deployment's cache images."""
        return [MANAGED_FILTER, f"{KIND}={KIND_CACHE}", f"{OWNER}={self.owner}"]

    async def _remove(self, ref: str) -> None:
        """Remove an image; one still used by a running container just loses its tag."""

        def remove() -> None:
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                self.client.images.remove(ref, force=True)

        await engine_call(remove)
