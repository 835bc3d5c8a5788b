"""The language selection before setup against the real engine: an image's `gantry-select`
that never ends fails the setup, named, instead of holding it."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from runner import environment as environment_module
from runner.environment import Environments
from runner.languages import LanguageSelectionError
from runner.tasklog import TaskLog
from tests.runner.conftest import Origin, Owner, request_for
from tests.runner.test_sandbox_probes import committed

# An image whose `gantry-select` (first on PATH) waits forever, as a broken or hostile one may.
HANGING_SELECT_IMAGE = "gantry-test-hanging-select:latest"
HANGING_SELECT = (
    "printf '#!/bin/sh\\nexec sleep 100000\\n' > /usr/local/bin/gantry-select && "
    "chmod +x /usr/local/bin/gantry-select"
)


async def test_a_gantry_select_that_never_ends_fails_the_setup_naming_the_language_selection(
    docker_client: docker.DockerClient,
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = committed(docker_client, HANGING_SELECT_IMAGE, HANGING_SELECT)
    # raising=False: without the deadline, the test shows the setup holding on.
    monkeypatch.setattr(environment_module, "SELECT_LIMIT_S", 3.0, raising=False)
    request = request_for(owner, origin, origin.first_sha, image=image, languages={"node": "20"})
    started = time.monotonic()
    preparing = asyncio.ensure_future(environments.prepare(request, task_log))
    done, _ = await asyncio.wait([preparing], timeout=45)
    if not done:
        preparing.cancel()
        await asyncio.wait([preparing])
    assert done, f"the setup still waits on gantry-select after 45s: {task_log.tail(3)}"
    with pytest.raises(LanguageSelectionError) as failure:
        preparing.result()
    took = time.monotonic() - started
    reason = str(failure.value)
    assert "the language selection (the image's gantry-select)" in reason, reason
    assert "did not finish within 3s" in reason, reason
    assert f"[setup] [gantry] setup failed: {reason}" in task_log.text()
    assert took < 45
    # Nothing of the setup is left: its container went with the failure.
    label = f"gantry.task={owner.task_id}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
