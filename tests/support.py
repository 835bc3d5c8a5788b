"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import os

# Built by scripts/base-image (the tag there must match).
TEST_BASE_IMAGE = "gantry-test-base:bookworm"


def docker_required() -> bool:
    """In CI a Docker-backed test may never skip: a missing engine is a failure."""
    return bool(os.environ.get("CI"))
