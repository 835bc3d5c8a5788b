"""The real agent CLIs of the presets, in the agents image, driven by the model stand-in.

Each test starts the stand-in on the host side of a fresh bridge network, runs the preset's
command line in a container on it over a tiny git repository, and checks that the scripted
tool call made the edit and that every model request carried the task's token.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator

import docker
import docker.errors
import pytest
import pytest_asyncio
from docker.models.containers import Container
from docker.models.networks import Network

from forge.model_script import Script, Text, ToolCall
from forge.models import ModelStandIn
from runner.labels import TASK
from runner.presets import invocation
from tests.images.conftest import ROOT
from tests.runner.conftest import Owner

AGENTS_IMAGE = "gantry-agents:ci"
TOKEN = "gantry-task-token-0123456789"
EDIT_PATH = "notes/EDITED.md"
EDIT_CONTENT = "The model stand-in wrote this.\nSecond line.\n"
PROMPT = "Write the notes file."
MODELS = {"codex": "gpt-5-codex", "claude": "claude-sonnet-4-5"}
RUN_LIMIT_S = 180
# A tiny repository, then the agent; the container's exit status is the agent's.
PREPARE = (
    "git init -q /workspace && cd /workspace && echo widget > README.md && git add . "
    "&& git -c user.name=t -c user.email=t@example.invalid commit -qm init && "
)


@pytest.fixture(scope="session")
def agents_image(docker_client: docker.DockerClient) -> str:
    """The agents image, built from the test base image unless the tag exists already."""
    try:
        docker_client.images.get(AGENTS_IMAGE)
    except docker.errors.ImageNotFound:
        script = ROOT / "scripts" / "agent-image"
        subprocess.run(["bash", str(script), AGENTS_IMAGE], check=True)
    return AGENTS_IMAGE


@pytest.fixture
def network(docker_client: docker.DockerClient, owner: Owner) -> Network:
    """A bridge network of the test's own (the owner fixture removes it)."""
    return docker_client.networks.create(
        f"gantry-agents-{owner.task_id}", driver="bridge", labels={TASK: owner.task_id}
    )


def host_address(network: Network) -> str:
    """The host's address on the network: where containers on it reach the stand-in."""
    network.reload()
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])


@pytest_asyncio.fixture
async def stand_in(network: Network) -> AsyncIterator[ModelStandIn]:
    """The model stand-in, scripted to write EDIT_PATH, wanting the task's token."""
    running = ModelStandIn(Script(path=EDIT_PATH, content=EDIT_CONTENT), expected_key=TOKEN)
    await running.start(host_address(network))
    yield running
    await running.close()


def read_file(container: Container, path: str) -> str | None:
    """A file's text from a (stopped) container, None when absent."""
    try:
        chunks, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = archive.extractfile(archive.getmembers()[0])
        assert member is not None
        return member.read().decode()


async def run_preset(
    client: docker.DockerClient,
    image: str,
    owner: Owner,
    network: Network,
    stand_in: ModelStandIn,
    preset: str,
    model: str | None = "",
) -> tuple[int, str, str | None]:
    """Run a preset's command line to the end: (exit status, output, the edited file)."""
    run = invocation(preset, stand_in.url(), TOKEN, MODELS[preset] if model == "" else model)
    container = client.containers.create(
        image,
        ["bash", "-c", PREPARE + run.command],
        environment={"GANTRY_PROMPT": PROMPT, **run.env},
        network=network.name,
        labels={TASK: owner.task_id, "gantry.test": "1"},
        mem_limit="2g",
    )
    container.start()
    started = time.monotonic()
    status = await asyncio.to_thread(container.wait, timeout=RUN_LIMIT_S)
    print(f"{preset}: {time.monotonic() - started:.1f} s in the container")
    output = container.logs().decode(errors="replace")
    return int(status["StatusCode"]), output, read_file(container, f"/workspace/{EDIT_PATH}")


def assert_conversation(stand_in: ModelStandIn, api: str, result_type: str) -> None:
    """The CLI asked, ran the tool, sent its result back and got the answer, all with the token."""
    requests = stand_in.model_requests("openai" if api == "openai" else "anthropic")
    assert requests, stand_in.received
    assert {r.api_key for r in requests} == {TOKEN}
    assert {r.status for r in requests} == {200}
    assert isinstance(requests[0].reply, ToolCall)
    assert isinstance(requests[-1].reply, Text)
    assert result_type in str(requests[-1].body)


@pytest.mark.docker
async def test_codex_makes_the_scripted_edit(
    docker_client: docker.DockerClient,
    agents_image: str,
    owner: Owner,
    network: Network,
    stand_in: ModelStandIn,
) -> None:
    status, output, edited = await run_preset(
        docker_client, agents_image, owner, network, stand_in, "codex"
    )
    assert status == 0, output[-3000:]
    assert edited == EDIT_CONTENT, output[-3000:]
    assert_conversation(stand_in, "openai", "function_call_output")
    assert {r.path for r in stand_in.model_requests()} == {"/openai/v1/responses"}


@pytest.mark.docker
async def test_codex_default_model_makes_the_edit_in_code_mode(
    docker_client: docker.DockerClient,
    agents_image: str,
    owner: Owner,
    network: Network,
    stand_in: ModelStandIn,
) -> None:
    status, output, edited = await run_preset(
        docker_client, agents_image, owner, network, stand_in, "codex", model=None
    )
    assert status == 0, output[-3000:]
    assert edited == EDIT_CONTENT, output[-3000:]
    # Without -m, Codex offers its tools in "code mode": one JavaScript `exec` tool.
    first = stand_in.model_requests("openai")[0]
    assert not first.body.get("tools")
    assert isinstance(first.reply, ToolCall)
    assert first.reply.name == "exec"
    assert_conversation(stand_in, "openai", "custom_tool_call_output")


@pytest.mark.docker
async def test_claude_code_makes_the_scripted_edit(
    docker_client: docker.DockerClient,
    agents_image: str,
    owner: Owner,
    network: Network,
    stand_in: ModelStandIn,
) -> None:
    status, output, edited = await run_preset(
        docker_client, agents_image, owner, network, stand_in, "claude"
    )
    assert status == 0, output[-3000:]
    assert edited == EDIT_CONTENT, output[-3000:]
    assert_conversation(stand_in, "anthropic", "tool_result")
    assert {r.path for r in stand_in.model_requests()} == {"/anthropic/v1/messages"}
    # Nonessential traffic is off: nothing but the Messages API reached the stand-in.
    assert stand_in.received == stand_in.model_requests()
