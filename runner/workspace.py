"""/workspace inside the container, filled from the read-only mirror at the exact SHA."""

from __future__ import annotations

import shlex
from pathlib import Path

from docker.types import Mount

from runner.sandbox import WORKSPACE

MIRROR_TARGET = "/gantry/mirror"
# The container's git reads the mirror mount; root owns both, but be explicit for other uids.
GIT = "git -c safe.directory='*' -c advice.detachedHead=false"


def mirror_mount(mirror: Path) -> Mount:
    """The repository's bare mirror, mounted read-only: objects in, nothing out, no token."""
    return Mount(MIRROR_TARGET, str(mirror), type="bind", read_only=True)


def checkout_script(sha: str) -> str:
    """A fresh clone sharing the mirror's objects (nothing copied), detached at `sha`."""
    quoted = shlex.quote(sha)
    return (
        f"set -e; {GIT} clone --quiet --shared --no-checkout {MIRROR_TARGET} {WORKSPACE}; "
        f"cd {WORKSPACE}; {GIT} checkout --quiet --detach {quoted}; "
        f"{GIT} remote remove origin"
    )


def move_script(sha: str) -> str:
    """Move a cached checkout to `sha`; what setup left untracked (build output) stays."""
    quoted = shlex.quote(sha)
    return f"set -e; cd {WORKSPACE}; {GIT} checkout --quiet --force --detach {quoted}"
