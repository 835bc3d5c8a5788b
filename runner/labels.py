"""Labels on every container, network and image Gantry creates, so a restart can sweep them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

MANAGED = "gantry.managed"
TASK = "gantry.task"
REPO = "gantry.repo"
KIND = "gantry.kind"
OWNER = "gantry.owner"
# Which deployment (task store) created an object: a sweep only touches its own, so two
# Gantry instances (or test runs) on one engine never remove each other's containers.
DEFAULT_OWNER = "default"
MANAGED_FILTER = f"{MANAGED}=1"

KIND_SETUP = "setup"
KIND_AGENT = "agent"
KIND_PROXY = "proxy"
KIND_NETWORK = "network"
KIND_CACHE = "cache"
KIND_SERVICE = "service"
# A service container's key in `services:` (its host name on the task's network).
SERVICE = "gantry.service"


def gantry_labels(task_id: str, repo: str, kind: str, owner: str = DEFAULT_OWNER) -> dict[str, str]:
    """The labels of one object that belongs to a task."""
    return {MANAGED: "1", TASK: task_id, REPO: repo, KIND: kind, OWNER: owner}


def deployment_owner(store_identity: str) -> str:
    """A stable owner label for a deployment, from what names its task store (database URL)."""
    return "d-" + hashlib.sha256(store_identity.encode()).hexdigest()[:16]


def is_managed(labels: Mapping[str, str] | None) -> bool:
    """Whether an object carries Gantry's mark."""
    return labels is not None and labels.get(MANAGED) == "1"


def task_of(labels: Mapping[str, str] | None) -> str | None:
    """The task id an object belongs to, if any."""
    return (labels or {}).get(TASK)
