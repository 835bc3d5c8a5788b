"""The egress proxy's log as an attack: an agent under `limited` floods refused requests with
long targets. The proxy's log on the engine stays under its cap, what the server keeps of it
(the PR's list of blocked attempts) is bounded, and the task still ends with its report."""

from __future__ import annotations

import asyncio
import time

import docker

from runner.labels import KIND_AGENT, KIND_PROXY, deployment_owner
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, set_config, wait_final
from tests.support import TEST_BASE_IMAGE

REQUESTS = 20_000
TARGET_BYTES = 32_000
# What the proxy's log may hold on the engine (two json-file files of 1 MiB): unbounded, the
# flood alone would write REQUESTS * TARGET_BYTES = 640 MB.
LOG_CAP = 2 * 1024**2
FLOODED = "/tmp/flooded"
GO_ON = "/tmp/go-on"
FLOOD = f"""\
import concurrent.futures, os, socket
host, port = os.environ["HTTP_PROXY"].removeprefix("http://").rsplit(":", 1)
pad = "x" * {TARGET_BYTES}
def one(i):
    try:
        with socket.create_connection((host, int(port)), 30) as s:
            line = f"GET http://denied.test/{{i}}/{{pad}} HTTP/1.1\\r\\n"
            s.sendall((line + "Host: denied.test\\r\\n\\r\\n").encode())
            return s.recv(200).startswith(b"HTTP/1.1 403")
    except OSError:
        return False
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    refused = sum(pool.map(one, range({REQUESTS})))
print("refused", refused)
"""
# The agent floods, says so, and waits until the test has looked at the proxy's log.
AGENT = f"""\
cat > /tmp/flood.py <<'PY'
{FLOOD}PY
python3 /tmp/flood.py
touch {FLOODED}
while [ ! -f {GO_ON} ]; do sleep 0.2; done
echo done > fix.txt
"""
CONFIG = (
    f"image: {TEST_BASE_IMAGE}\nagent:\n  command: |\n"
    + "".join(f"    {line}\n" for line in AGENT.splitlines())
    + "network: {setup: off, agent: limited, allow: [allowed.test]}\n"
    "resources: {cpus: 1, memory: 512m, pids: 256}\n"
    "checks: ['test -f fix.txt']\n"
)


def task_container(client: docker.DockerClient, live: Gantry, kind: str) -> str | None:
    owner = deployment_owner(live.settings.effective_database_url)
    labels = [f"gantry.owner={owner}", f"gantry.repo={OWNER}/{REPO}", f"gantry.kind={kind}"]
    found = client.containers.list(filters={"label": labels})
    return str(found[0].id) if found else None


def flooded(client: docker.DockerClient, live: Gantry) -> str | None:
    """The agent's container once its flood is over."""
    agent = task_container(client, live, KIND_AGENT)
    if agent is None:
        return None
    exec_id = client.api.exec_create(agent, ["test", "-f", FLOODED])["Id"]
    client.api.exec_start(exec_id)
    return agent if client.api.exec_inspect(exec_id)["ExitCode"] == 0 else None


async def wait_for_flood(client: docker.DockerClient, live: Gantry, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        agent = await asyncio.to_thread(flooded, client, live)
        if agent is not None:
            return agent
        await asyncio.sleep(1)
    raise AssertionError(f"the agent did not finish its flood in {seconds}s")


async def test_a_flood_of_refused_requests_leaves_the_proxy_log_and_the_report_bounded(
    live: Gantry, docker_client: docker.DockerClient
) -> None:
    await set_config(live, CONFIG)
    await comment_on(live, live.issue_number, "@gantry flood the proxy")
    agent = await wait_for_flood(docker_client, live, 900)
    proxy = task_container(docker_client, live, KIND_PROXY)
    assert proxy is not None
    log = await asyncio.to_thread(docker_client.api.logs, proxy)
    on_disk = docker_client.api.inspect_container(proxy)["LogPath"]
    exec_id = docker_client.api.exec_create(agent, ["touch", GO_ON])["Id"]
    await asyncio.to_thread(docker_client.api.exec_start, exec_id)
    [task] = await wait_final(live, 1, seconds=300)

    print(f"proxy log: {len(log)} bytes through the engine ({on_disk})")
    assert len(log) <= LOG_CAP
    assert log.count(b'"event": "blocked"') >= 500  # the flood did reach the proxy
    assert task.state is TaskState.SUCCEEDED, task
    [pull] = live.forge.pulls(OWNER, REPO)
    body = pull.issue.body or ""
    blocked = body.split("### Blocked network attempts", 1)[1]
    listed = [line for line in blocked.splitlines() if line.startswith("- ")]
    assert 2 < len(listed) <= 60, listed[:3]
    assert listed[0].startswith("- `GET http://denied.test/"), listed[0][:100]
    assert all(len(line) < 700 for line in listed), max(map(len, listed))
    assert "more refused requests (not recorded" in listed[-1], listed[-1]
    assert "[Task log](" in body  # the report's end survived the flood
