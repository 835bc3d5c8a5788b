"""Scale-out: tasks per minute with 1, 2 and 4 `gantry worker` processes on PostgreSQL (a light
agent: a 2 s sleep), and webhook intake on PostgreSQL next to SQLite, in one run.

Run: `.venv/bin/python -m benchmarks.scale_out [--rounds 2] [--rate 100] [--seconds 5]`

PostgreSQL: TEST_POSTGRES_URL (an admin URL, as .ci/run exports), else a throwaway cluster.
Each worker runs one task at a time (MAX_CONCURRENT_TASKS=1), so the workers are the
parallelism; the tasks are spread over 10 repositories (10 threads). Printed: tasks/minute
and its ratio to one worker; intake p50/p99 and throughput, PostgreSQL over SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import docker

from benchmarks import webhook
from config.database import Database
from forge.localnet import free_port
from forge.server import Forge
from runner.pg_store import PostgresTaskStore
from runner.task import ACTIVE_STATES
from tests import postgres
from tests.e2e.test_scale_out import REPOS, running, set_up, tasks_of

WORKER_COUNTS = (1, 2, 4)


async def tasks_per_minute(admin_url: str, workers: int, rounds: int) -> float:
    """Start serve and `workers` workers on a fresh database; ask `rounds` tasks of each
    repository; tasks per minute from the first webhook to the last task's end."""
    tmp = Path(tempfile.mkdtemp(prefix=f"gantry-scale-{workers}-"))
    client = docker.from_env()
    forge = Forge(tmp / "forge")
    await forge.start()
    try:
        with postgres.fresh_database(admin_url) as url:
            fleet = await set_up(forge, tmp, url)
            fleet.env["GANTRY_MAX_CONCURRENT_TASKS"] = "1"
            async with running(fleet, client, workers):
                store = await PostgresTaskStore.open(Database(url))
                try:
                    started = time.perf_counter()
                    for round_ in range(rounds):
                        for repo in REPOS:
                            await fleet.mention(repo, f"@gantry round {round_} on {repo}")
                    await all_end(store, len(REPOS) * rounds)
                    elapsed = time.perf_counter() - started
                finally:
                    await store.close()
    finally:
        await forge.close()
        client.close()
    return len(REPOS) * rounds / (elapsed / 60)


async def all_end(store: PostgresTaskStore, count: int) -> None:
    while True:
        tasks = await tasks_of(store, REPOS)
        if len(tasks) == count and all(t.state not in ACTIVE_STATES for t in tasks):
            return
        await asyncio.sleep(0.2)


async def intake(admin_url: str, rate: float, seconds: float) -> list[webhook.Result]:
    """`serve --no-workers` on SQLite, then on PostgreSQL: deliveries that create tasks."""
    tmp = Path(tempfile.mkdtemp(prefix="gantry-intake-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    forge_port = free_port()
    forge_log = tmp / "forge.log"
    forge_cmd = [
        webhook.PYTHON, "-m", "forge", "--port", str(forge_port), "--data-dir",
        str(tmp / "forge"), "--repo", f"{webhook.OWNER}/{webhook.REPO}", "--writer",
        webhook.WRITER,
    ]  # fmt: skip
    results = []
    with webhook.process(forge_cmd, env, forge_log), postgres.fresh_database(admin_url) as pg:
        base = f"http://127.0.0.1:{forge_port}"
        api = f"{base}/api/v3"
        while "installation" not in forge_log.read_text():
            await asyncio.sleep(0.1)
        facts = webhook.forge_facts(forge_log)
        comment = await webhook.seed_comment(api, facts)
        inst = int(facts["installation"])
        for name, database in (("SQLite", None), ("PostgreSQL", pg)):
            port, log = free_port(), tmp / f"serve-{name}.log"
            serve_env = (
                env
                | {
                    "GANTRY_GITHUB_WEBHOOK_SECRET": webhook.SECRET,
                    "GANTRY_GITHUB_APP_ID": facts["app_id"],
                    "GANTRY_GITHUB_PRIVATE_KEY_PATH": facts["key"],
                    "GANTRY_GITHUB_API_URL": api,
                    "GANTRY_DATA_DIR": str(tmp / name),
                }
                | ({"GANTRY_DATABASE_URL": database} if database else {})
            )
            serve_cmd = [webhook.PYTHON, "-m", "gantry", "serve", "--no-workers", "--port",
                         str(port)]  # fmt: skip
            with webhook.process(serve_cmd, serve_env, log):
                await webhook.wait_ready(f"http://127.0.0.1:{port}/healthz", log)
                make = lambda n: webhook.deliveries("task", n, base, api, inst, comment)  # noqa: E731
                url = f"http://127.0.0.1:{port}/webhook"
                results.append(await webhook.measure(name, url, make, rate, seconds))
    return results


async def run(rounds: int, rate: float, seconds: float) -> None:
    with postgres.server() as admin_url:
        rates = {n: await tasks_per_minute(admin_url, n, rounds) for n in WORKER_COUNTS}
        sqlite, pg = await intake(admin_url, rate, seconds)
    print(f"\n{'workers':>8} {'tasks/min':>10} {'vs 1 worker':>12}")
    for n, per_minute in rates.items():
        print(f"{n:>8} {per_minute:>10.1f} {per_minute / rates[1]:>11.2f}x")
    print(f"\nwebhook intake at {rate:.0f} deliveries/s, each creating a task:")
    print(f"{'store':<12} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'non-2xx':>8}")
    for r in (sqlite, pg):
        print(f"{r.name:<12} {r.pct(0.5):>8.2f} {r.pct(0.99):>8.2f} {r.throughput:>8.0f} "
              f"{r.errors:>8}")  # fmt: skip
    print(
        f"PostgreSQL / SQLite: p50 {pg.pct(0.5) / sqlite.pct(0.5):.2f}x, "
        f"p99 {pg.pct(0.99) / sqlite.pct(0.99):.2f}x, "
        f"throughput {pg.throughput / sqlite.throughput:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="tasks per repository (10 repos)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.rate, args.seconds))


if __name__ == "__main__":
    main()
