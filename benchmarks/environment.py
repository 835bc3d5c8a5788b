"""Environment start-up: warm cache next to the floor, cold next to warm, in one run.

Run: `.venv/bin/python -m benchmarks.environment [--setup-seconds 20] [--files 500] [--runs 3]`

Needs a Docker engine and the local test image (`scripts/base-image`). A repository on the
GitHub stand-in gets a setup script that sleeps for `--setup-seconds`. Measured from "start
task" (mirror fetch included) to "agent command ran":

- floor: a bare `docker run` of the same image plus a local `git clone` of the same repository;
- cold: no cache entry, so checkout, setup and the snapshot run;
- warm: a cache hit on a new commit each time: fetch the delta, move the checkout, maintenance.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker

from forge.server import Forge
from runner.cache import EnvironmentCache
from runner.environment import EnvironmentRequest, Environments
from runner.labels import TASK
from runner.mirror import Mirrors
from runner.network import NetworkPolicy, Networks
from runner.sandbox import Limits
from runner.tasklog import TaskLog

IMAGE = "gantry-test-base:bookworm"
AGENT_COMMAND = "true"
WARM_TARGET = 2.0
CACHE_TARGET = 0.10


def floor_seconds(client: docker.DockerClient, mirror: Path, scratch: Path, sha: str) -> float:
    """A bare `docker run` of the image plus a local clone of the repository."""
    started = time.monotonic()
    client.containers.run(IMAGE, ["true"], remove=True, labels={TASK: "benchmark-floor"})
    target = scratch / f"clone-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(mirror), str(target)], check=True
    )
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "--detach", sha], check=True)
    return time.monotonic() - started


async def start_task(envs: Environments, request: EnvironmentRequest, log: TaskLog) -> float:
    """Seconds from "start task" to the agent command having run."""
    started = time.monotonic()
    async with envs.open(request, log) as environment:
        result = await environment.run(AGENT_COMMAND, log, "agent", 60)
        elapsed = time.monotonic() - started
        if not result.ok:
            raise RuntimeError(f"the agent command failed: {log.tail(5)}")
    return elapsed


async def make_origin(forge: Forge, scratch: Path, files: int) -> str:
    """A repository of `files` small files on the stand-in; returns its first SHA."""
    source = scratch / "source"
    for n in range(files):
        path = source / f"pkg{n % 20}" / f"module{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {n}\n")
    await forge.create_repo("bench", "widget", source)
    return (await forge.branches("bench", "widget"))["main"]


async def measure(setup_seconds: float, files: int, runs: int) -> None:
    """Run the three measurements and print them with their ratios."""
    client = docker.from_env(timeout=120)
    task_id = f"benchmark-{uuid.uuid4().hex[:8]}"
    repo = f"bench/widget-{task_id}"
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        scratch = Path(tmp)
        forge = Forge(scratch / "forge")
        await forge.start()
        cache = EnvironmentCache(client, owner=task_id)
        networks = Networks(client, IMAGE, owner=task_id)
        envs = Environments(client, Mirrors(scratch / "data"), cache, networks)
        try:
            sha = await make_origin(forge, scratch, files)
            app = forge.register_app()
            token = forge.mint_token(forge.install(app.app_id, "bench", ["widget"]))
            log = TaskLog(scratch / "task.log")

            def request(at: str) -> EnvironmentRequest:
                return EnvironmentRequest(
                    task_id=task_id,
                    repo=repo,
                    clone_url=forge.git_url("bench", "widget"),
                    sha=at,
                    image=IMAGE,
                    token=token,
                    setup=(f"sleep {setup_seconds}",),
                    maintenance=("true",),
                    limits=Limits(cpus=2.0, memory=512 * 1024**2, pids=256),
                    network_setup=NetworkPolicy("off"),
                )

            cold = await start_task(envs, request(sha), log)
            warm = []
            new_sha = sha
            for n in range(runs):
                new_sha = await forge.commit_files("bench", "widget", "main", {f"n{n}.txt": "x"})
                warm.append(await start_task(envs, request(new_sha), log))
            mirror = envs.mirrors.path(repo)
            floor = [floor_seconds(client, mirror, scratch, new_sha) for _ in range(runs)]
            log.close()
        finally:
            await cache.drop_repo(repo)
            await forge.close()
            client.close()
    report(cold, statistics.median(warm), statistics.median(floor), setup_seconds)


def report(cold: float, warm: float, floor: float, setup_seconds: float) -> None:
    """Print the numbers and the ratios against DESIGN.md's targets."""
    print(f"floor (docker run + local clone): {floor:.2f}s")
    print(f"warm  (cache hit, new commit):    {warm:.2f}s")
    print(f"cold  (setup sleeps {setup_seconds:.0f}s):        {cold:.2f}s")
    print(f"cold overhead beyond setup:       {cold - setup_seconds:.2f}s")
    verdict = "ok" if warm / floor <= WARM_TARGET else "MISSED"
    print(f"warm / floor = {warm / floor:.2f} (target <= {WARM_TARGET}) {verdict}")
    verdict = "ok" if warm / cold < CACHE_TARGET else "MISSED"
    print(f"warm / cold  = {warm / cold:.3f} (target < {CACHE_TARGET}) {verdict}")
    print(f"cold / warm  = {cold / warm:.1f}x")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setup-seconds", type=float, default=20.0)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.setup_seconds, args.files, args.runs))


if __name__ == "__main__":
    main()
