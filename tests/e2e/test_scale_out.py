"""Scale-out on PostgreSQL, as on several hosts: `gantry serve --no-workers` and three
`gantry worker` processes, each with its own data dir, run 30 tasks over 10 repositories of
the stand-in; one worker is killed with SIGKILL mid-task; a cancel reaches another process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import docker

from bot import task_page
from config.database import Database
from forge.localnet import answers, free_port
from forge.server import Forge
from runner.labels import deployment_owner
from runner.pg_store import PostgresTaskStore
from runner.task import ACTIVE_STATES, Task, TaskState
from tests.bot.conftest import OWNER, SECRET, WRITER
from tests.e2e.conftest import config_with
from tests.support import TEST_BASE_IMAGE

REPOS = [f"fleet-{n}" for n in range(10)]
ROUNDS = 3
CANCEL_REPO = "fleet-cancel"
AGENT = 'sleep 2\necho "agent-output $GANTRY_PROMPT"\necho "$GANTRY_PROMPT" > answer.txt'
LEASE_S = 4


@dataclass
class Fleet:
    """The processes, their logs, and what the store showed while they ran."""

    forge: Forge
    tmp: Path
    env: dict[str, str]
    port: int
    installation: int
    issues: dict[str, int]
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    started: dict[str, list[int]] = field(default_factory=dict)  # thread -> task ids, in order
    ran_on: dict[int, set[str]] = field(default_factory=dict)  # task id -> lease owners seen
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    async def start(self, name: str, *args: str) -> None:
        port = self.metrics_ports.setdefault(name, free_port())
        env = self.env | {
            "GANTRY_DATA_DIR": str(self.tmp / name),
            "GANTRY_METRICS_ADDRESS": f"127.0.0.1:{port}",
        }
        out = self.log(name).open("ab")
        self.processes[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gantry", *args, env=env, stdout=out, stderr=out
        )

    async def mention(self, repo: str, text: str) -> None:
        comment = self.forge.add_comment(OWNER, repo, self.issues[repo], text, WRITER)
        status = await self.forge.send_webhook(
            f"http://127.0.0.1:{self.port}/webhook", SECRET, "issue_comment", "created",
            owner=OWNER, repo=repo, installation_id=self.installation, sender=WRITER,
            body=text, number=self.issues[repo], comment_id=comment,
        )  # fmt: skip
        assert status == 200


async def watch(fleet: Fleet, store: PostgresTaskStore) -> None:
    """Sample the running tasks: no thread twice at once, and each thread's start order."""
    while True:
        running = await store.with_state(TaskState.RUNNING)
        threads = [f"{t.repo}#{t.number}" for t in running]
        fleet.overlaps.extend(t for t in set(threads) if threads.count(t) > 1)
        for task in running:
            order = fleet.started.setdefault(f"{task.repo}#{task.number}", [])
            if task.id not in order:
                order.append(task.id)
            owner = await lease_owner(store, task.id)
            if owner:
                fleet.ran_on.setdefault(task.id, set()).add(owner)
        await asyncio.sleep(0.05)


async def lease_owner(store: PostgresTaskStore, task_id: int) -> str | None:
    """Which worker holds a task's lease (read from the store's table itself)."""
    async with store.pool.connection() as conn:
        cursor = await conn.execute("select lease_owner from tasks where id = %s", (task_id,))
        row = await cursor.fetchone()
    return None if row is None else row["lease_owner"]


async def set_up(forge: Forge, tmp: Path, database_url: str) -> Fleet:
    """Ten repositories (and one for the cancel), the App on all, an issue in each."""
    creds = forge.register_app("gantry")
    issues = {}
    for repo in [*REPOS, CANCEL_REPO]:
        source = tmp / "sources" / repo
        (source / ".github").mkdir(parents=True)
        agent = "sleep 600" if repo == CANCEL_REPO else AGENT
        (source / ".github" / "gantry.yml").write_text(config_with(agent))
        await forge.create_repo(OWNER, repo, source)
        forge.set_permission(OWNER, repo, WRITER, "write")
        issues[repo] = forge.create_issue(OWNER, repo, f"Work on {repo}", "").number
    installation = forge.install(creds.app_id, OWNER, [*REPOS, CANCEL_REPO])
    key = tmp / "app.pem"
    key.write_text(creds.private_key_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")} | {
        "GANTRY_GITHUB_WEBHOOK_SECRET": SECRET,
        "GANTRY_GITHUB_APP_ID": str(creds.app_id),
        "GANTRY_GITHUB_PRIVATE_KEY_PATH": str(key),
        "GANTRY_GITHUB_API_URL": forge.api_url,
        "GANTRY_DATABASE_URL": database_url,
        "GANTRY_DEFAULT_IMAGE": TEST_BASE_IMAGE,
        "GANTRY_EGRESS_PROXY_IMAGE": TEST_BASE_IMAGE,
        "GANTRY_MAX_CONCURRENT_TASKS": "2",
        "GANTRY_TASK_LEASE": str(LEASE_S),
        "GANTRY_DRAIN_TIMEOUT": "5",
    }
    return Fleet(forge, tmp, env, free_port(), installation, issues)


@contextlib.asynccontextmanager
async def running(
    fleet: Fleet, client: docker.DockerClient, workers: int = 3
) -> AsyncIterator[None]:
    """Serve (intake and pages only) and `workers` workers; all stopped, and their
    containers removed, after."""
    try:
        await fleet.start("serve", "serve", "--no-workers", "--port", str(fleet.port))
        assert await answers(f"http://127.0.0.1:{fleet.port}/healthz", 30), fleet.log("serve")
        for n in range(workers):
            await fleet.start(f"worker-{n}", "worker")
        yield
    finally:
        for process in fleet.processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()
        owner = deployment_owner(fleet.env["GANTRY_DATABASE_URL"])
        for container in client.containers.list(
            all=True, filters={"label": [f"gantry.owner={owner}"]}
        ):
            container.remove(force=True)


async def tasks_of(store: PostgresTaskStore, repos: list[str]) -> list[Task]:
    found = [t for repo in repos for t in await store.repo_tasks(f"{OWNER}/{repo}", 100)]
    return sorted(found, key=lambda t: t.id)


async def test_serve_and_three_workers_on_postgresql(
    forge: Forge, tmp_path: Path, postgres_url: str, docker_client: docker.DockerClient
) -> None:
    fleet = await set_up(forge, tmp_path, postgres_url)
    async with running(fleet, docker_client):
        store = await PostgresTaskStore.open(Database(postgres_url))
        watcher = asyncio.create_task(watch(fleet, store))
        try:
            await ask_for_thirty(fleet, store)
            killed = await kill_a_worker_mid_task(fleet, store)
            await cancel_on_another_process(fleet, store)
            await until_all_end(store)
            await check_the_work(fleet, store, killed)
            await check_a_page_from_another_process(fleet, store)
            await check_each_workers_metrics(fleet)
            await drain_everyone(fleet)
        finally:
            watcher.cancel()
            await store.close()


async def ask_for_thirty(fleet: Fleet, store: PostgresTaskStore) -> None:
    """Three rounds of a mention on each repository's issue; a round is stored before the
    next is asked, so that each thread's order is the order of its task ids."""
    for round_ in range(ROUNDS):
        for repo in REPOS:
            await fleet.mention(repo, f"@gantry round {round_} on {repo}")
        want = len(REPOS) * (round_ + 1)
        for _ in range(600):
            if len(await tasks_of(store, REPOS)) >= want:
                break
            await asyncio.sleep(0.1)
        assert len(await tasks_of(store, REPOS)) == want


async def kill_a_worker_mid_task(fleet: Fleet, store: PostgresTaskStore) -> int:
    """SIGKILL worker-0 while it runs a task; that task's id."""
    victim = str(fleet.tmp / "worker-0")
    for _ in range(1200):
        for task in await store.with_state(TaskState.RUNNING):
            if (await lease_owner(store, task.id) or "").endswith(victim):
                fleet.processes["worker-0"].send_signal(signal.SIGKILL)
                await fleet.processes["worker-0"].wait()
                return task.id
        await asyncio.sleep(0.05)
    raise AssertionError("worker-0 never ran a task")


async def cancel_on_another_process(fleet: Fleet, store: PostgresTaskStore) -> None:
    """A task that would run for 10 minutes on some worker; `@gantry cancel` to the server."""
    await fleet.mention(CANCEL_REPO, "@gantry take forever")
    await until_state(store, CANCEL_REPO, TaskState.RUNNING, 240)
    await asyncio.sleep(2)  # into its agent
    await fleet.mention(CANCEL_REPO, "@gantry cancel")
    await until_state(store, CANCEL_REPO, TaskState.CANCELLED, 30)


async def until_state(
    store: PostgresTaskStore, repo: str, state: TaskState, seconds: float
) -> None:
    for _ in range(int(seconds * 10)):
        found = await tasks_of(store, [repo])
        if found and found[0].state is state:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{repo}'s task never reached {state}: {found}")


async def until_all_end(store: PostgresTaskStore) -> None:
    for _ in range(6000):
        tasks = await tasks_of(store, REPOS)
        if all(t.state not in ACTIVE_STATES for t in tasks):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("tasks still active after 10 minutes")


async def check_the_work(fleet: Fleet, store: PostgresTaskStore, killed: int) -> None:
    tasks = await tasks_of(store, REPOS)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 30
    pulls = {repo: fleet.forge.pulls(OWNER, repo) for repo in REPOS}
    assert {repo: len(found) for repo, found in pulls.items()} == dict.fromkeys(REPOS, ROUNDS)
    urls = [(await store.task_branch(t.id)) for t in tasks]
    assert all(u is not None and u.pull_url for u in urls)
    assert len({u.pull_url for u in urls if u}) == 30  # one PR each, none twice
    assert fleet.overlaps == []
    for thread, order in fleet.started.items():
        if not thread.endswith(CANCEL_REPO + f"#{fleet.issues[CANCEL_REPO]}"):
            assert order == sorted(order), thread
    taken_back = await store.get(killed)
    assert taken_back is not None
    assert taken_back.state is TaskState.SUCCEEDED
    assert len(fleet.ran_on[killed]) == 2  # the killed worker, then another
    owners = {owner for seen in fleet.ran_on.values() for owner in seen}
    assert len(owners) == 3


async def check_a_page_from_another_process(fleet: Fleet, store: PostgresTaskStore) -> None:
    """The server ran no task, yet shows a task's log and diff."""
    [task, *_] = await tasks_of(store, REPOS)
    url = task_page.signed_url(f"http://127.0.0.1:{fleet.port}", SECRET, task.id)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        body = await response.text()
    # The inbox handles deliveries side by side: task #1 may be any repository's first round.
    assert task.request.startswith("round ")
    assert f"agent-output {task.request}" in body
    assert "answer.txt" in body


async def check_each_workers_metrics(fleet: Fleet) -> None:
    """Each live worker serves /metrics: the tasks it ran, and the shared store's gauges."""
    finished = 0.0
    async with aiohttp.ClientSession() as session:
        for name in ("worker-1", "worker-2"):
            url = f"http://127.0.0.1:{fleet.metrics_ports[name]}/metrics"
            async with session.get(url) as response:
                assert response.status == 200
                text = await response.text()
            assert 'gantry_tasks{state="succeeded"} 30.0' in text
            finished += sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("gantry_tasks_finished_total{")
            )
    assert finished >= 20  # worker-0 ran the rest before it was killed


async def drain_everyone(fleet: Fleet) -> None:
    """SIGTERM: the workers drain (nothing runs) and every process exits cleanly."""
    for process in fleet.processes.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    codes = {n: await asyncio.wait_for(p.wait(), 60) for n, p in fleet.processes.items()}
    assert codes == {"serve": 0, "worker-0": -signal.SIGKILL, "worker-1": 0, "worker-2": 0}
    assert "draining" in fleet.log("worker-1").read_text()
