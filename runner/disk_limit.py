"""Disk limits: whether the engine enforces a container's size, decided once per engine, and
the bounded tmpfs that stands in for each of an image's VOLUME paths.

An image's `VOLUME` paths would otherwise be anonymous volumes on the engine's disk, outside
a container's size: every container of a task (its own, its services') gets a local tmpfs
volume of its disk limit at each instead. Its pages count against the container's memory;
it is not copied from the image, not kept by a commit, not kept across a restart, and it is
removed with the container (`v=True`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.models.images import Image
from docker.types import DriverConfig, Mount
from requests.exceptions import RequestException

from config.errors import GantryError

DOCS = "docs/operating.md#disk-limit"
FIX = (
    "put the Docker engine's data root on xfs mounted with pquota, or on btrfs "
    "(as root: GANTRY_DOCKER_DISK_LIMIT=1 scripts/docker-engine); see " + DOCS
)
# Drivers that take `--storage-opt size` per container; overlay2 only on xfs with pquota.
SIZED_DRIVERS = ("overlay2", "btrfs", "zfs", "devicemapper")
# btrfs limits a container's referenced bytes (qgroup max_rfer): its image counts too.
IMAGE_COUNTING_DRIVERS = ("btrfs",)
PROBE_SIZE = 1024**3
PROBE_LABELS = {"gantry.managed": "1", "gantry.kind": "disk-probe"}
# Words in the engine's refusal of `storage_opt` (overlay2 without pquota, vfs, ...).
REFUSAL_WORDS = ("storage", "quota", "size")


def image_volumes(image: Image, taken: Collection[str] = ()) -> tuple[str, ...]:
    """An inspected image's VOLUME paths, but those a mount of `taken` targets already covers."""
    paths = (image.attrs.get("Config") or {}).get("Volumes") or {}
    return tuple(sorted(str(p) for p in paths if str(p).rstrip("/") not in taken))


def volume_mounts(paths: Iterable[str], size: int | None) -> list[Mount]:
    """A tmpfs of `size` bytes (None: unsized) at each of an image's VOLUME paths, in place of
    an anonymous volume: a local volume with tmpfs options is world-writable (sticky) like
    /tmp, so a container that runs as any user can write there."""
    options = f"size={size},nosuid,nodev" if size is not None else "nosuid,nodev"
    driver = DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": options})
    return [Mount(path, None, type="volume", driver_config=driver) for path in sorted(paths)]


class DiskProbeError(GantryError):
    """The probe container could not be made for a reason other than the size option."""


@dataclass(frozen=True)
class DiskLimitSupport:
    """Whether the engine enforces disk limits, how (or why not), and what counts against one."""

    enforced: bool
    detail: str
    counts_image: bool = False


def driver_status(info: Mapping[str, Any]) -> dict[str, str]:
    """`docker info`'s DriverStatus pairs as a dict."""
    pairs = info.get("DriverStatus") or []
    return {str(pair[0]): str(pair[1]) for pair in pairs if len(pair) == 2}


def precheck(info: Mapping[str, Any]) -> DiskLimitSupport | None:
    """The verdict from `docker info` alone, or None when only a probe can tell."""
    driver = str(info.get("Driver") or "unknown")
    if driver not in SIZED_DRIVERS:
        return DiskLimitSupport(False, f"storage driver {driver} has no per-container size")
    backing = driver_status(info).get("Backing Filesystem", "")
    if driver == "overlay2" and backing != "xfs":
        where = f"on {backing}" if backing else "not on xfs"
        return DiskLimitSupport(False, f"overlay2 {where}: sizes need xfs mounted with pquota")
    return None


def decide(info: Mapping[str, Any], probe_error: str | None) -> DiskLimitSupport:
    """The verdict from `docker info` and the outcome of a probe with a size."""
    early = precheck(info)
    if early is not None:
        return early
    driver = str(info.get("Driver"))
    if probe_error is not None:
        return DiskLimitSupport(False, f"{driver}: the engine refused a size ({probe_error})")
    where = " on xfs with project quotas" if driver == "overlay2" else ""
    return DiskLimitSupport(
        True, f"{driver}{where} enforces sizes", driver in IMAGE_COUNTING_DRIVERS
    )


def storage_size(limit: int, support: DiskLimitSupport, image_bytes: int) -> int | None:
    """The `size` storage option for a limit of `limit` bytes of writes, None if unenforced."""
    if not support.enforced:
        return None
    return limit + image_bytes if support.counts_image else limit


def is_refusal(message: str) -> bool:
    """Whether an engine error refuses the size option itself."""
    lowered = message.lower()
    return any(word in lowered for word in REFUSAL_WORDS)


def probe(client: docker.DockerClient, image: str) -> str | None:
    """Create (never start) a container with a size and remove it; the refusal, if any."""
    try:
        container = client.api.create_container(
            image,
            ["true"],
            labels=PROBE_LABELS,
            host_config=client.api.create_host_config(storage_opt={"size": str(PROBE_SIZE)}),
        )
    except docker.errors.APIError as exc:
        if is_refusal(str(exc)):
            return str(exc.explanation or exc)
        raise DiskProbeError(f"cannot probe the disk limit with {image}: {exc}") from exc
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        client.api.remove_container(container["Id"], force=True, v=True)
    return None


def detect(client: docker.DockerClient, image: str) -> DiskLimitSupport:
    """Ask the engine (blocking): `docker info`, then a probe when the info allows sizes."""
    try:
        info = client.info()
        early = precheck(info)
        return early if early is not None else decide(info, probe(client, image))
    except (docker.errors.DockerException, RequestException) as exc:
        raise DiskProbeError(f"cannot ask the engine about disk limits: {exc}") from exc


class SupportCache:
    """One answer per engine client: the data root does not change under a running engine."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[docker.DockerClient, DiskLimitSupport] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, client: docker.DockerClient, image: str) -> DiskLimitSupport:
        """The cached answer, or a fresh one (blocking)."""
        known = self._known.get(client)
        if known is None:
            known = self._known[client] = detect(client, image)
        return known
