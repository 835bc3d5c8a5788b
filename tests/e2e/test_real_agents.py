"""Real agent CLIs in the sandbox, driven by the model stand-in through the model gateway.

The repository's agent is a preset (Codex CLI or Claude Code) with `network.agent: off`. The
stand-in plays the provider: it wants the operator's real key, which only the gateway holds.
Its scripted tool call makes the edit and then runs a probe, inside the agent's own process
tree, that looks for the key and for anything reachable but the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from forge.model_script import Script
from forge.models import ModelStandIn
from forge.server import Forge
from runner.network import bridge_gateway_address
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, git_show, running_gantry, wait_final
from tests.images.test_agent_clis import agents_image

__all__ = ["agents_image"]  # the session fixture that builds the image

KEY_PREFIX = "sk-gantry-real-"
EDIT_PATH, EDIT_CONTENT = "notes/DONE.md", "The agent was here.\n"
MODELS = {"codex": "gpt-5-codex", "claude": "claude-sonnet-4-5"}
# Runs as the scripted tool call, so in the agent's process tree with the agent's variables.
PROBE = r"""
import json, os, socket, sys, urllib.parse
mark = "sk-gantry" + "-real-"
found = []
for pid in os.listdir("/proc"):
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError:
            continue
        if mark.encode() in data:
            found.append(f"/proc/{pid}/{name}")
for top in ("/etc", "/root", "/tmp", "/var/tmp", "/workspace", "/home", "/usr/local/share", "/opt"):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("node_modules", ".git")]
        for file in files:
            path = os.path.join(root, file)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 4 << 20:
                    continue
                if mark.encode() in open(path, "rb").read():
                    found.append(path)
            except OSError:
                continue
def reach(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False
gateway = urllib.parse.urlsplit(os.environ.get("OPENAI_BASE_URL", ""))
targets = {name: value.split(":") for name, value in (a.split("=", 1) for a in sys.argv[1:])}
try:
    socket.getaddrinfo("example.com", 443)
    dns = True
except OSError:
    dns = False
print(json.dumps({
    "key_found": found,
    "token": os.environ.get("OPENAI_API_KEY", "")[:7],
    "gateway": reach(gateway.hostname, gateway.port),
    "reachable": sorted(n for n, (h, p) in targets.items() if reach(h, p)),
    "dns": dns,
}))
"""
AGENTS = """\
# Agents

## Checks

```sh
test -f notes/DONE.md
```
"""


def config(preset: str, extra: str = "") -> str:
    """A preset agent in the agents image, with no network but the gateway."""
    return (
        f"image: gantry-agents:ci\nagent: {{preset: {preset}, model: {MODELS[preset]}}}\n"
        "network: {setup: off, agent: off}\n"
        "resources: {cpus: 1, memory: 2g, pids: 512}\n" + extra
    )


@pytest.fixture
def real_key() -> str:
    """The operator's key: only the gateway and the stand-in ever see it."""
    return KEY_PREFIX + secrets.token_hex(16)


@pytest.fixture
def host_listener(docker_client: docker.DockerClient) -> Iterator[socket.socket]:
    """A TCP listener on the host's bridge address: it must hear nothing from the sandbox."""
    server = socket.create_server((bridge_gateway_address(docker_client), 0))
    server.setblocking(False)
    yield server
    server.close()


def heard_anything(server: socket.socket) -> bool:
    """Whether any connection reached the listener (the kernel queues it even unaccepted)."""
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


@pytest_asyncio.fixture
async def stand_in(real_key: str) -> AsyncIterator[ModelStandIn]:
    """The provider: the scripted edit, then the probe; it wants the real key."""
    async with ModelStandIn(expected_key=real_key) as running:
        yield running


@contextlib.asynccontextmanager
async def gantry_for(
    forge: Forge, tmp_path: Path, stand_in: ModelStandIn, key: str, text: str
) -> AsyncIterator[Gantry]:
    """A Gantry whose providers are the stand-in, with `text` as the repository's config."""
    files = {".github/gantry.yml": text, "AGENTS.md": AGENTS, "probe.py": PROBE}
    async with running_gantry(
        forge,
        tmp_path,
        files,
        openai_base_url=f"{stand_in.url()}/v1",
        openai_api_key=key,
        anthropic_base_url=stand_in.url(),
        anthropic_api_key=key,
    ) as gantry:
        yield gantry


@pytest.mark.parametrize("preset", ["codex", "claude"])
async def test_a_real_cli_edits_through_the_gateway_and_never_holds_the_key(
    forge: Forge,
    tmp_path: Path,
    agents_image: str,
    docker_client: docker.DockerClient,
    stand_in: ModelStandIn,
    real_key: str,
    host_listener: socket.socket,
    preset: str,
) -> None:
    host, port = host_listener.getsockname()[:2]
    targets = f"host_listener={host}:{port} internet=1.1.1.1:443 host_ssh={host}:22"
    stand_in.script = Script(
        path=EDIT_PATH, content=EDIT_CONTENT, then=f"python3 probe.py {targets} > probe.json"
    )
    async with gantry_for(forge, tmp_path, stand_in, real_key, config(preset)) as live:
        await comment_on(live, live.issue_number, "@gantry write the notes file")
        [task] = await wait_final(live, 1, seconds=300)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        assert task.state is TaskState.SUCCEEDED, comments
        [pull] = live.forge.pulls(OWNER, REPO)
        head = (await live.forge.branches(OWNER, REPO))[pull.head]
        assert await git_show(live.forge, "show", f"{head}:{EDIT_PATH}") == EDIT_CONTENT
        probe = json.loads(await git_show(live.forge, "show", f"{head}:probe.json"))
        body = pull.issue.body or ""
        progress = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
    assert probe == {
        "key_found": [],
        "token": "gantry-",
        "gateway": True,
        "reachable": [],
        "dns": False,
    }
    requests = stand_in.model_requests()
    assert requests
    assert {r.api_key for r in requests} == {real_key}
    # Codex offers the provider's web search in every request; under `off` the gateway drops it.
    offered = [tool for r in requests for tool in r.body.get("tools") or ()]
    assert not [tool for tool in offered if str(tool.get("type")).startswith("web_search")]
    assert f"🤖 {preset} ({MODELS[preset]}) · model {MODELS[preset]}" in body
    assert f"{len(requests)} request" in body
    assert real_key not in body
    assert any(f"🤖 {preset}" in text for text in progress)
    assert not heard_anything(host_listener)


async def test_a_runaway_model_stops_at_the_request_budget(
    forge: Forge,
    tmp_path: Path,
    agents_image: str,
    stand_in: ModelStandIn,
    real_key: str,
) -> None:
    stand_in.script = Script(kind="runaway", path=EDIT_PATH, content=EDIT_CONTENT)
    text = config("codex").replace(
        "model: gpt-5-codex}", "model: gpt-5-codex, budget: {requests: 4}}"
    )
    async with gantry_for(forge, tmp_path, stand_in, real_key, text) as live:
        await comment_on(live, live.issue_number, "@gantry never stop")
        [task] = await wait_final(live, 1, seconds=300)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        await asyncio.sleep(1.0)  # anything the CLI still sends would arrive by now
    assert task.state is TaskState.FAILED
    assert len(stand_in.model_requests()) == 4
    [progress] = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
    assert "requests budget ran out" in progress
    assert "Gantry budget exhausted" in progress
    assert forge.pulls(OWNER, REPO) == []


@pytest.mark.parametrize("failure", [429, 500, "down"])
async def test_a_failing_provider_is_reported_as_the_provider(
    forge: Forge,
    tmp_path: Path,
    agents_image: str,
    stand_in: ModelStandIn,
    real_key: str,
    failure: int | str,
) -> None:
    stand_in.script = Script(path=EDIT_PATH, content=EDIT_CONTENT)
    if isinstance(failure, int):
        stand_in.fail_with(failure, count=100)
    else:
        await stand_in.close()  # nothing listens at the provider's address any more
    async with gantry_for(forge, tmp_path, stand_in, real_key, config("codex")) as live:
        await comment_on(live, live.issue_number, "@gantry write the notes file")
        [task] = await wait_final(live, 1, seconds=300)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
    assert task.state is TaskState.FAILED
    [progress] = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
    assert "😕 Failed in the **agent** phase: the model provider failed" in progress
    # What the provider did, as the gateway saw it.
    down = "could not reach the openai API"
    said = f"the openai API answered {failure}" if failure != "down" else down
    assert said in progress, progress
    assert real_key not in progress


# The agent keeps its gateway URL and token; the check, run later in the same container,
# tries them. Each run writes `<role>.json` into the workspace, so the PR carries it.
STOLEN_TOKEN = r"""
import json, os, sys, urllib.error, urllib.request

def call(url, token):
    body = json.dumps({"model": "gpt-test", "input": "hello"}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{url}/responses", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return f"answered {answer.status}", ""
    except urllib.error.HTTPError as exc:
        return f"refused {exc.code}", ""
    except OSError as exc:
        return "unreachable", str(exc)

role = sys.argv[1]
if role == "agent":
    url, token = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
    with open("gateway.txt", "w") as saved:
        saved.write(f"{url}\n{token}\n")
else:
    url, token = open("gateway.txt").read().split()
outcome, why = call(url, token)
with open(f"{role}.json", "w") as out:
    json.dump({
        "outcome": outcome,
        "why": why,
        "key": os.environ.get("OPENAI_API_KEY", "unset"),
        "base_url": os.environ.get("OPENAI_BASE_URL", "unset"),
    }, out)
"""
STOLEN_TOKEN_AGENTS = """\
# Agents

## Checks

```sh
python3 stolen_token.py check
```
"""
# `off` and `limited` reach the gateway through the proxy's relay, which closes with the
# agent phase; under `full` the gateway stays on the bridge and the revoked token is refused.
AFTER_THE_AGENT = {"off": "unreachable", "limited": "unreachable", "full": "refused 401"}


@pytest.mark.parametrize("mode", list(AFTER_THE_AGENT))
async def test_a_check_cannot_use_the_agents_gateway_or_token(
    forge: Forge, tmp_path: Path, stand_in: ModelStandIn, real_key: str, mode: str
) -> None:
    text = config_with("python3 stolen_token.py agent").replace("agent: off", f"agent: {mode}")
    files = {
        ".github/gantry.yml": text,
        "AGENTS.md": STOLEN_TOKEN_AGENTS,
        "stolen_token.py": STOLEN_TOKEN,
    }
    settings = {"openai_base_url": f"{stand_in.url()}/v1", "openai_api_key": real_key}
    async with running_gantry(forge, tmp_path, files, **settings) as live:
        await comment_on(live, live.issue_number, "@gantry use the model")
        [task] = await wait_final(live, 1)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        assert task.state is TaskState.SUCCEEDED, comments
        [pull] = live.forge.pulls(OWNER, REPO)
        head = (await live.forge.branches(OWNER, REPO))[pull.head]
        agent = json.loads(await git_show(live.forge, "show", f"{head}:agent.json"))
        check = json.loads(await git_show(live.forge, "show", f"{head}:check.json"))
    # During the agent phase the token works, through the gateway, with the real key upstream.
    assert agent["outcome"] == "answered 200", agent
    assert agent["key"].startswith("gantry-")
    # The check holds the agent's URL and token, but no variables of its own, and gets nowhere.
    assert check["outcome"] == AFTER_THE_AGENT[mode], check
    assert (check["key"], check["base_url"]) == ("unset", "unset")
    [request] = stand_in.model_requests()
    assert request.api_key == real_key
