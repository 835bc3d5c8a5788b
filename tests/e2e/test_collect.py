"""End to end: what the agent leaves is what lands, file kinds and parallelism included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forge.server import Forge
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, WRITER, Gantry
from tests.e2e.conftest import (
    comment_on,
    config_with,
    git_show,
    running_gantry,
    set_config,
    wait_final,
)
from tests.support import TEST_BASE_IMAGE

AGENT = """\
printf 'tool\\n' > tool.sh && chmod +x tool.sh
printf '\\000\\001\\002binary' > blob.bin
mv old.txt renamed.txt
mkdir -p build && echo ignored > build/out.txt
echo untracked > notes/new.txt 2>/dev/null || (mkdir notes && echo untracked > notes/new.txt)
"""


async def test_binary_renames_modes_untracked_in_ignored_out(live: Gantry) -> None:
    await live.forge.commit_files(OWNER, REPO, "main", {".gitignore": "build/\n"})
    await set_config(live, config_with(AGENT, "checks: []\n"))
    await comment_on(live, live.issue_number, "@gantry reorganise")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    [pull] = live.forge.pulls(OWNER, REPO)
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    status = await git_show(live.forge, "show", "-M", "--name-status", "--format=", head)
    assert sorted(status.strip().splitlines()) == [
        "A\tblob.bin",
        "A\tnotes/new.txt",
        "A\ttool.sh",
        "R100\told.txt\trenamed.txt",
    ]
    tree = await git_show(live.forge, "ls-tree", head, "tool.sh")
    assert tree.startswith("100755 ")
    blob = await git_show(live.forge, "cat-file", "-p", f"{head}:blob.bin")
    assert blob.endswith("binary")


async def test_a_follow_up_on_a_gantry_pr_gets_a_check_run_on_its_head(live: Gantry) -> None:
    await set_config(live, config_with("date +%s%N > stamp.txt; echo ok > fix.txt"))
    await comment_on(live, live.issue_number, "@gantry stamp it")
    await wait_final(live, 1)
    [pull] = live.forge.pulls(OWNER, REPO)
    before = (await live.forge.branches(OWNER, REPO))[pull.head]
    await comment_on(live, pull.issue.number, "@gantry stamp again", pull=True)
    tasks = await wait_final(live, 2)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]
    after = (await live.forge.branches(OWNER, REPO))[pull.head]
    runs = live.forge.check_runs(OWNER, REPO)
    on_after = [run for run in runs if run["head_sha"] == after]
    # The round's rewrite of stamp.txt within its checkout's second was once left out of the
    # patch (tests/runner/test_checked_tree.py): should a round push nothing again, the message
    # says what was there.
    every = [
        (t.id, t.state, t.head_sha)
        for s in TaskState
        for t in await live.services.store.with_state(s)
    ]
    seen = [
        (r["head_sha"][:7], r["status"], r["conclusion"], (r.get("output") or {}).get("title"))
        for r in runs
    ]
    assert after != before, f"the round pushed nothing: {seen}; tasks {every}"
    assert len(on_after) == 1, f"before {before[:7]}, after {after[:7]}: {seen}; tasks {every}"
    [verdict] = on_after
    # The round's verdict is on the commit it pushed; the run it started on points there.
    assert (verdict["name"], verdict["conclusion"]) == ("Gantry", "success")
    assert verdict["status"] == "completed"
    # On the commit before: the first task's own verdict and the round's started run, in
    # whichever order the two tasks' reports reached GitHub.
    on_before = sorted(run["conclusion"] for run in runs if run["head_sha"] == before)
    assert on_before == ["neutral", "success"]


async def test_two_requests_on_one_thread_run_one_after_the_other(live: Gantry) -> None:
    await set_config(live, config_with("date +%s%N > start.txt; sleep 1; date +%s%N > end.txt"))
    await comment_on(live, live.issue_number, "@gantry first")
    await comment_on(live, live.issue_number, "@gantry second")
    tasks = await wait_final(live, 2)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]
    pulls = live.forge.pulls(OWNER, REPO)
    assert len(pulls) == 2  # each request on an issue is its own PR
    path = live.forge.repo(OWNER, REPO).path
    branches = await live.forge.branches(OWNER, REPO)
    spans = [
        [int(await show(path, f"{branches[p.head]}:{name}")) for name in ("start.txt", "end.txt")]
        for p in pulls
    ]
    (_, first_end), (second_start, _) = spans
    assert first_end <= second_start


async def test_two_repositories_run_in_parallel(live: Gantry, tmp_path: Path) -> None:
    # Each agent notes when it started and ended; overlapping intervals prove parallelism
    # without timing anything.
    agent = config_with("date +%s%N > start.txt; sleep 2; date +%s%N > end.txt")
    await set_config(live, agent)
    second = tmp_path / "second"
    (second / ".github").mkdir(parents=True)
    (second / ".github" / "gantry.yml").write_text(agent)
    await live.forge.create_repo(OWNER, "second", second)
    installation = live.forge.install(live.creds.app_id, OWNER, ["second"])
    live.forge.set_permission(OWNER, "second", WRITER, "write")
    other = live.forge.create_issue(OWNER, "second", "Second repo", "")
    await comment_on(live, live.issue_number, "@gantry one")
    await comment_on(live, other.number, "@gantry two", repo="second", installation_id=installation)
    tasks = await wait_final(live, 2)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]
    assert {t.repo for t in tasks} == {f"{OWNER}/{REPO}", f"{OWNER}/second"}
    spans = []
    for repo in (REPO, "second"):
        [pull] = live.forge.pulls(OWNER, repo)
        head = (await live.forge.branches(OWNER, repo))[pull.head]
        path = live.forge.repo(OWNER, repo).path
        spans.append([int(await show(path, f"{head}:{name}")) for name in ("start.txt", "end.txt")])
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b
    assert start_b < end_a


async def show(bare: Path, spec: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", f"--git-dir={bare}", "show", spec, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def test_the_agents_own_commit_message_is_the_pushed_commits(live: Gantry) -> None:
    agent = "echo ok > fix.txt && git add fix.txt && git commit -qm 'Add the fix file' -m 'Why.'"
    await set_config(
        live, config_with(f"git config user.email a@b.c; git config user.name a\n{agent}")
    )
    await comment_on(live, live.issue_number, "@gantry fix it")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    [pull] = live.forge.pulls(OWNER, REPO)
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    message = await git_show(live.forge, "log", "-1", "--format=%B", head)
    assert message.startswith("Add the fix file\n\nWhy.\n")


async def test_a_nested_repository_the_agent_made_is_refused_by_name_not_published(
    live: Gantry,
) -> None:
    # A scaffolder that runs `git init` in a new directory: the patch would hold a submodule
    # link to a commit only the container has, and none of the files.
    nested = (
        "mkdir app && cd app && git init -q && echo hi > f.txt && git add f.txt && "
        "git -c user.name=a -c user.email=a@b.c commit -qm scaffold"
    )
    await set_config(live, config_with(f"echo ok > fix.txt\n{nested}"))
    await comment_on(live, live.issue_number, "@gantry scaffold it")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.FAILED
    assert live.forge.pulls(OWNER, REPO) == []
    replies = [c["body"] for c in live.forge.comments(OWNER, REPO, live.issue_number)]
    assert any("makes app a nested git repository" in body for body in replies), replies


async def test_a_nested_repository_with_no_commit_is_refused_by_name(live: Gantry) -> None:
    # `git init` in a new directory and files written there, nothing committed: git cannot
    # take the directory in at all (it has no commit to link to), and the task must say why.
    nested = "mkdir -p web/app && cd web/app && git init -q && echo hi > f.txt"
    await set_config(live, config_with(f"echo ok > fix.txt\n{nested}"))
    await comment_on(live, live.issue_number, "@gantry scaffold it")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.FAILED
    assert live.forge.pulls(OWNER, REPO) == []
    replies = [c["body"] for c in live.forge.comments(OWNER, REPO, live.issue_number)]
    assert any(
        "makes web/app a nested git repository with no commit" in body for body in replies
    ), replies


SECRET_VALUE = "deploy-token-7a2b9c"
LEAKY_CONFIG = f"""\
image: {TEST_BASE_IMAGE}
agent:
  command: |
    git config user.email a@b.c; git config user.name a
    T=$(sed 's/.*=//' "$HOME/.npmrc" 2>/dev/null || echo none)
    echo ok > fix.txt && git add fix.txt && git commit -qm 'Configure the registry' -m "token: $T"
secrets: [DEPLOY_TOKEN]
setup: printf '//registry/:_authToken=%s\\n' "$DEPLOY_TOKEN" > "$HOME/.npmrc"
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
"""


async def test_a_secret_in_the_agents_commit_message_is_never_published(
    forge: Forge, tmp_path: Path
) -> None:
    # Setup leaves a token where the agent can read it; the agent puts it in its commit
    # message, which would become the pushed commit's message and the PR's description.
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"{OWNER}/{REPO}:\n  DEPLOY_TOKEN: {SECRET_VALUE}\n")
    secrets.chmod(0o600)
    files = {".github/gantry.yml": LEAKY_CONFIG}
    async with running_gantry(forge, tmp_path, files, secrets_file=secrets) as leaky:
        await comment_on(leaky, leaky.issue_number, "@gantry fix the date test")
        [task] = await wait_final(leaky, 1)
        comments = [c["body"] for c in forge.comments(OWNER, REPO, leaky.issue_number)]
    assert task.state is TaskState.FAILED
    assert forge.pulls(OWNER, REPO) == []
    assert not any(SECRET_VALUE in body for body in comments)
    assert any("commit message contains the value of a secret" in body for body in comments)
    branches = await forge.branches(OWNER, REPO)
    for sha in branches.values():
        assert SECRET_VALUE not in await git_show(forge, "log", "--format=%B", sha)
