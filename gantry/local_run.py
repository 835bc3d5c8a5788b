"""`gantry run [PATH] --prompt TEXT`: the pipeline on a local checkout, without GitHub."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import docker
import docker.errors

from bot.branches import slugify
from bot.reports import check_table
from config.errors import GantryError
from config.loader import Checkout, read_checkout
from config.repo_config import ConfigError
from config.secret_store import read_secret_store
from config.settings import Settings
from gantry.commit_checkout import read_commit_checkout
from gantry.executors import build_executor, engine_client
from gateway import ModelGateway
from runner import host_git
from runner.executor import Executor
from runner.model_access import running_gateway
from runner.pipeline import PipelineDeps, Published, Source, Work, run_task
from runner.publish import Publication, commit_message, publish, user_identity
from runner.results import Conclusion, Phase, PhaseStatus, TaskResult
from runner.task import Task, TaskState
from runner.tasklog import TaskLog

MARKS = {
    PhaseStatus.RUNNING: "…",
    PhaseStatus.DONE: "✓",
    PhaseStatus.FAILED: "✗",
    PhaseStatus.SKIPPED: "-",
    PhaseStatus.PENDING: " ",
}
LOCAL_OWNER = "local"
LOCAL_AUTHOR = user_identity("gantry-local", None)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`gantry run [PATH] --prompt TEXT [--ref REF]`."""
    run = commands.add_parser(
        "run",
        help="run one task on a local git checkout (no GitHub): a local branch and a patch",
        description="Run the pipeline on PATH's commit at REF in a container; the result is a "
        "local branch gantry/local-<slug> and a patch file.",
    )
    run.add_argument("path", nargs="?", type=Path, default=Path("."))
    run.add_argument("--prompt", required=True, help="the request for the agent")
    run.add_argument(
        "--ref",
        help="the commit to start from, its .github/gantry.yml and AGENTS.md with it "
        "(default: HEAD, with the working tree's .github/gantry.yml and AGENTS.md)",
    )


@dataclass
class ConsoleReporter:
    """Progress in a terminal: one line per phase as it ends."""

    out: TextIO
    started_at: float = field(default_factory=time.monotonic)

    async def started(self) -> None:
        print("gantry run: starting", file=self.out, flush=True)

    async def phase(self, phase: Phase) -> None:
        if phase.status is PhaseStatus.RUNNING:
            print(f"  {MARKS[phase.status]} {phase.name} …", file=self.out, flush=True)
            return
        timing = f" {phase.seconds:.1f}s" if phase.seconds is not None else ""
        note = f"  ({phase.note})" if phase.note else ""
        line = f"  {MARKS[phase.status]} {phase.name}{timing}{note}"
        print(line, file=self.out, flush=True)

    async def finished(self, result: TaskResult) -> None:
        total = time.monotonic() - self.started_at
        print(f"\n{result.conclusion.value} in {total:.1f}s", file=self.out)
        if result.checks:
            print("\n" + check_table(result.checks), file=self.out)
        if result.conclusion is Conclusion.FAILED:
            print(f"\nfailed in {result.failed_phase}: {result.reason}", file=self.out)
            print(result.log_tail, file=self.out)


@dataclass
class LocalPublisher:
    """A branch in the local repository and a patch file next to it."""

    root: Path
    mirror: Path
    prompt: str
    patch_dir: Path

    async def publish(self, work: Work) -> Published:
        branch = f"gantry/local-{slugify(self.prompt)}-{int(time.time())}"
        message = commit_message(work.message.strip() or self.prompt, "", LOCAL_AUTHOR)
        sha = await publish(
            Publication(
                mirror=self.mirror,
                start_sha=work.base_sha,
                patch=work.patch,
                branch=branch,
                message=message,
                author=LOCAL_AUTHOR,
                clone_url=str(self.root),
                token=None,
            )
        )
        patch_file = self.patch_dir / f"{branch.replace('/', '-')}.patch"
        patch_file.write_bytes(work.patch)
        return Published(f"branch {branch}, patch {patch_file}", sha)


def local_task(root: Path, prompt: str, task_id: int) -> Task:
    """A task that is never stored: the pipeline's input for a local run."""
    return Task(
        repo=f"{LOCAL_OWNER}/{slugify(root.name)}",
        installation_id=0,
        number=0,
        is_pull_request=False,
        title=prompt.splitlines()[0] if prompt.strip() else "local run",
        clone_url=str(root),
        default_branch="HEAD",
        comment_id=None,
        comment_kind="local",
        requester="you",
        kind="request",
        request=prompt,
        head_ref=None,
        head_sha=None,
        thread_body="",
        id=task_id,
        delivery_id="local",
        state=TaskState.RUNNING,
        created_at=time.time(),
        updated_at=time.time(),
    )


async def resolve(root: Path, ref: str) -> str:
    """The commit `ref` names in the local checkout, asked of host git."""
    out = await host_git.run(["rev-parse", "--verify", f"{ref}^{{commit}}"], git_dir=root / ".git")
    return out.decode().strip()


async def load_checkout(
    settings: Settings, root: Path, ref: str | None, sha: str
) -> Checkout | ConfigError:
    """The config and AGENTS.md the task runs with: the commit's with `--ref`, else the
    working tree's (so that an edit to them can be tried before it is committed)."""
    try:
        if ref is None:
            return await asyncio.to_thread(read_checkout, root, settings)
        return await read_commit_checkout(root / ".git", sha, settings)
    except ConfigError as exc:
        return exc


async def run_local(
    settings: Settings, root: Path, prompt: str, ref: str | None, out: TextIO
) -> int:
    """Run one task at `ref` (None: HEAD, with the working tree's config); 0 when it
    published or found nothing to change, 1 when it failed, 2 when it could not start."""
    if not prompt.strip():  # as `@gantry` alone starts no task
        print("gantry run: --prompt is empty: say what the agent should do", file=out)
        return 2
    if not (root / ".git").exists():
        print(f"gantry run: {root} is not the top of a git checkout (no .git)", file=out)
        return 2
    start = "HEAD" if ref is None else ref
    try:
        sha = await resolve(root, start)
    except host_git.HostGitError as exc:
        why = " ".join(str(exc).split())
        print(f"gantry run: {start!r} names no commit in {root} ({why})", file=out)
        return 2
    checkout = await load_checkout(settings, root, ref, sha)
    client = await asyncio.to_thread(engine_client, settings)
    try:
        async with running_gateway(settings, client) as model:
            environments = build_executor(settings, client, model.route)
            return await run_checkout(
                settings, environments, model.gateway, root, prompt, sha, checkout, out
            )
    finally:
        if client is not None:
            await asyncio.to_thread(client.close)


async def run_checkout(
    settings: Settings,
    environments: Executor[Any],
    gateway: ModelGateway,
    root: Path,
    prompt: str,
    sha: str,
    checkout: Checkout | ConfigError,
    out: TextIO,
) -> int:
    """The pipeline on a checkout at `sha` with its config, the result left beside it."""
    task = local_task(root, prompt, int(time.time()))

    async def load(_task: Task, _source: Source) -> Checkout | ConfigError:
        return checkout

    async def source(_task: Task) -> Source:
        return Source(sha, None, None)

    deps = PipelineDeps(
        environments=environments,
        secrets=read_secret_store(settings.secrets_file),
        agent_command=settings.agent_command,
        resolve_source=source,
        load_checkout=load,
        gateway=gateway,
    )
    mirror = environments.mirrors.path(task.repo)
    publisher = LocalPublisher(root, mirror, prompt, Path.cwd())
    tasklog = TaskLog(settings.data_dir / "logs" / f"local-{task.id}.log")
    try:
        result = await run_task(task, deps, ConsoleReporter(out), publisher, tasklog)
    finally:
        tasklog.close()
    if result.usage:
        print(result.usage, file=out)
    if result.conclusion is Conclusion.PUBLISHED:
        print(f"\nresult: {result.pull_url}", file=out)
    print(f"log: {tasklog.path}", file=out)
    return 0 if result.conclusion in (Conclusion.PUBLISHED, Conclusion.NO_CHANGES) else 1


def main(settings: Settings, args: argparse.Namespace) -> int:
    root = args.path.resolve()
    try:
        return asyncio.run(run_local(settings, root, args.prompt, args.ref, sys.stdout))
    except docker.errors.DockerException as exc:
        print(f"gantry run: no Docker engine answers ({exc}); see gantry doctor", file=sys.stderr)
        return 2
    except GantryError as exc:
        print(f"gantry run: {exc}", file=sys.stderr)
        return 1
