"""End to end: the task page's stream delivers the agent's lines while the agent still runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import docker

from bot.task_page import signature
from forge.server import Forge
from runner.labels import deployment_owner
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, SECRET, Gantry
from tests.bot.test_task_page_live import lines_until, rest
from tests.e2e.conftest import AGENTS, comment_on, config_with, running_gantry, wait_final

GO_FILE = "/tmp/gantry-test-go"
# The agent says something, then waits (at most about three minutes) for the test's go.
AGENT = f"""\
echo "agent-says-hello"
for i in $(seq 900); do [ -e {GO_FILE} ] && break; sleep 0.2; done
echo "agent-heard-go"
printf 'fixed\\n' > fix.txt"""
# Environment set-up can be quiet for a while before the agent speaks.
SLOW_S = 120


def release_agent(live: Gantry) -> int:
    """Create the go file in this deployment's running containers; how many got it."""
    owner = deployment_owner(live.settings.effective_database_url)
    labels = ["gantry.managed=1", f"gantry.repo={OWNER}/{REPO}", f"gantry.owner={owner}"]
    client = docker.from_env()
    try:
        running = client.containers.list(filters={"label": labels, "status": "running"})
        for container in running:
            container.exec_run(["touch", GO_FILE])
        return len(running)
    finally:
        client.close()


async def test_the_stream_delivers_the_agents_lines_while_it_runs_then_ends(
    docker_client: docker.DockerClient, forge: Forge, tmp_path: Path
) -> None:
    files = {".github/gantry.yml": config_with(AGENT), "AGENTS.md": AGENTS}
    async with running_gantry(forge, tmp_path, files) as live:
        await comment_on(live, live.issue_number, "@gantry say hello")
        task = await live.services.store.latest_for_thread(f"{OWNER}/{REPO}", live.issue_number)
        assert task is not None
        sig = signature(SECRET, task.id)
        async with aiohttp.ClientSession() as session:
            page = await (
                await session.get(live.server.make_url(f"/tasks/{task.id}?sig={sig}"))
            ).text()
            assert "new EventSource(" in page
            url = live.server.make_url(f"/tasks/{task.id}/log?sig={sig}")
            async with session.get(url) as stream:
                before = await lines_until(stream, "agent-says-hello", SLOW_S)
                now = await live.services.store.get(task.id)
                assert now is not None
                assert now.state is TaskState.RUNNING  # read from the stream mid-agent
                assert not any("agent-heard-go" in line for line in before)
                assert await asyncio.to_thread(release_agent, live) >= 1
                events = await rest(stream, SLOW_S)
        [done] = await wait_final(live, 1)
    after = [str(line) for e in events if e.name == "lines" for line in e.data["lines"]]  # type: ignore[attr-defined]
    assert "[agent] agent-heard-go" in after
    assert any(line.startswith("[publish] ") for line in after)
    assert events[-1].name == "end"
    assert events[-1].data == {"state": "succeeded"}
    assert done.state is TaskState.SUCCEEDED
