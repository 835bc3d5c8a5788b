"""From webhook to pull request, warm cache, next to the floor measured in the same run.

Run: `.venv/bin/python -m benchmarks.pipeline [--runs 5] [--image gantry-test-base:bookworm]`

The floor is what any tool must do for the same result: clone the repository, run the agent
command in a fresh container of the same image, commit and push a branch. Gantry adds the
webhook, the permission check, the cache lookup, maintenance, checks, collect, the PR and the
progress reporting. Printed: median seconds of each, the ratio, and each phase's share.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestServer

from bot.app import SERVICES
from config.settings import Settings
from forge.server import Forge
from gantry.compose import create_app

SECRET = "bench-secret"
PHASE_NAMES = ("prepare", "environment", "agent", "checks", "collect", "publish")
# What happens outside the phases, in order: the inbox making the task, the worker picking it
# up, the steps between phases, and the pull request showing after publish started.
OUTSIDE = ("to task", "to worker", "between phases")
OWNER, REPO, USER = "bench", "small", "alice"
AGENT = "date +%s%N > stamp.txt"


def config(image: str) -> str:
    return (
        f"image: {image}\nagent:\n  command: {AGENT}\nchecks: ['test -s stamp.txt']\n"
        "network: {setup: off, agent: off}\n"
    )


def sh(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def floor_once(forge: Forge, token: str, image: str, work: Path, n: int) -> float:
    """Clone, run the agent in a fresh container, commit, push: the least anyone can do."""
    started = time.perf_counter()
    clone = work / f"floor-{n}"
    sh("git", "clone", "-q", forge.git_url(OWNER, REPO, token), str(clone))
    sh("docker", "run", "--rm", "--network", "none", "-v", f"{clone}:/w", "-w", "/w", image,
       "sh", "-c", AGENT)  # fmt: skip
    sh("git", "-C", str(clone), "add", "-A")
    sh("git", "-C", str(clone), "-c", "user.name=f", "-c", "user.email=f@x", "commit", "-qm", "f")
    sh("git", "-C", str(clone), "push", "-q", "origin", f"HEAD:refs/heads/floor-{n}")
    return time.perf_counter() - started


async def gantry_once(
    forge: Forge, url: str, installation: int, issue: int, server: TestServer
) -> tuple[float, dict[str, float]]:
    """Webhook to PR: post a signed comment, wait until the PR exists. The seconds, and
    where they went: each phase, and the gaps around them (see `timeline`)."""
    services = server.app[SERVICES]
    before = len(forge.pulls(OWNER, REPO))
    comment = forge.add_comment(OWNER, REPO, issue, "@gantry stamp it", USER)
    started, sent_at = time.perf_counter(), time.time()
    status = await forge.send_webhook(
        url, SECRET, "issue_comment", "created", owner=OWNER, repo=REPO,
        installation_id=installation, sender=USER, body="@gantry stamp it", number=issue,
        comment_id=comment,
    )  # fmt: skip
    assert status == 200, status
    while len(forge.pulls(OWNER, REPO)) == before:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    if services.workers is not None:
        await services.workers.worker.settle()
    latest = await services.store.latest_for_thread(f"{OWNER}/{REPO}", issue)
    assert latest is not None
    database = services.settings.sqlite_path
    assert database is not None
    return elapsed, timeline(database, latest.id, sent_at)


def timeline(database: Path, task_id: int, sent_at: float) -> dict[str, float]:
    """Seconds of each phase, and of the gaps: webhook sent → task stored → first phase
    started → … (a phase's start is its end in the store minus its seconds)."""
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        created = conn.execute("select created_at from tasks where id = ?", (task_id,)).fetchone()
        query = "select name, seconds, updated_at from phases where task_id = ? and seconds > 0"
        rows = conn.execute(query, (task_id,)).fetchall()
    finally:
        conn.close()
    spans = sorted((end - seconds, end, name) for name, seconds, end in rows)
    times = {name: end - start for start, end, name in spans}
    times["to task"] = created[0] - sent_at
    times["to worker"] = spans[0][0] - created[0] if spans else 0.0
    times["between phases"] = sum(b[0] - a[1] for a, b in itertools.pairwise(spans))
    return times


async def run(runs: int, image: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="gantry-bench-pipeline-"))
    source = work / "source"
    (source / ".github").mkdir(parents=True)
    (source / ".github" / "gantry.yml").write_text(config(image))
    (source / "README.md").write_text("# small\n")
    forge = Forge(work / "forge")
    await forge.start()
    await forge.create_repo(OWNER, REPO, source)
    creds = forge.register_app("gantry")
    installation = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, USER, "write")
    settings = Settings(
        github_webhook_secret=SECRET,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=work / "data",
        default_image=image,
    )
    server = TestServer(create_app(settings))
    await server.start_server()
    url = str(server.make_url("/webhook"))
    try:
        token = forge.mint_token(installation)
        issues = [forge.create_issue(OWNER, REPO, f"Task {n}", "").number for n in range(runs + 1)]
        await gantry_once(forge, url, installation, issues[0], server)  # warms the cache
        gantry, shares = [], []
        floors = [await asyncio.to_thread(floor_once, forge, token, image, work, 0)]
        for n in range(runs):
            elapsed, phases = await gantry_once(forge, url, installation, issues[n + 1], server)
            gantry.append(elapsed)
            shares.append(phases)
            floors.append(await asyncio.to_thread(floor_once, forge, token, image, work, n + 1))
    finally:
        await server.close()
        await forge.close()
    report(gantry, floors[1:], shares)


def report(gantry: list[float], floors: list[float], shares: list[dict[str, float]]) -> None:
    g, f = statistics.median(gantry), statistics.median(floors)
    print(f"\nwebhook → PR, warm cache: median {g:.2f}s over {len(gantry)} runs")
    print(f"floor (clone + docker run + commit + push): median {f:.2f}s")
    print(f"ratio gantry / floor: {g / f:.2f}x (target <= 2x)")
    print("\nwhere Gantry's time went (median of each):")
    for name in (*PHASE_NAMES, *OUTSIDE):
        seconds = statistics.median(s.get(name, 0.0) for s in shares)
        print(f"  {name:<15} {seconds:6.2f}s  {100 * seconds / g:5.1f}%")
    accounted = statistics.median(sum(s.values()) for s in shares)
    rest = g - accounted
    print(f"  {'(rest)':<15} {rest:6.2f}s  {100 * rest / g:5.1f}%  the pull request showing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="gantry-test-base:bookworm")
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.image))


if __name__ == "__main__":
    main()
