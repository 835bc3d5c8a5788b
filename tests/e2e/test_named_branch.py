"""`@gantry on release-2.1: …` end to end: the task works on the branch's code, its PR targets
the branch, and the branch's code, being untrusted, never runs setup nor meets a secret."""

from __future__ import annotations

from pathlib import Path

from bot import task_page
from forge.server import Forge
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO
from tests.e2e.conftest import comment_on, git_show, running_gantry, wait_final
from tests.support import TEST_BASE_IMAGE

SECRET_VALUE = "deploy-token-7a2b9c"
BRANCH = "release-2.1"
CONFIG = f"""\
image: {TEST_BASE_IMAGE}
agent:
  command: |
    {{ cat version.txt; printf 'fixed: %s\\n' "$GANTRY_PROMPT"; }} > fix.txt
secrets: [DEPLOY_TOKEN]
setup: sh setup.sh
maintenance: |
  test -z "${{DEPLOY_TOKEN:-}}" && echo maintenance-without-secret || echo maintenance-with-secret
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
"""
TRUSTED_SETUP = 'if [ -n "$DEPLOY_TOKEN" ]; then echo trusted-setup-had-its-secret; fi\n'
BRANCH_SETUP = "echo branch-setup-ran\n"


def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.yml"
    path.write_text(f"{OWNER}/{REPO}:\n  DEPLOY_TOKEN: {SECRET_VALUE}\n")
    path.chmod(0o600)
    return path


async def test_a_named_branch_is_worked_on_untrusted_and_its_pr_targets_it(
    forge: Forge, tmp_path: Path
) -> None:
    files = {".github/gantry.yml": CONFIG, "setup.sh": TRUSTED_SETUP, "version.txt": "main\n"}
    async with running_gantry(forge, tmp_path, files, secrets_file=secrets_file(tmp_path)) as live:
        theirs = {"version.txt": "2.1\n", "setup.sh": BRANCH_SETUP}
        start = await forge.commit_files(OWNER, REPO, BRANCH, theirs)
        await comment_on(live, live.issue_number, f"@gantry on {BRANCH}: fix the date test")
        [task] = await wait_final(live, 1)
        assert task.state is TaskState.SUCCEEDED, forge.comments(OWNER, REPO, live.issue_number)
        assert task.head_ref == BRANCH
        log = task_page.log_path(live.settings.data_dir, task.id).read_text()
        assert "is untrusted: setup runs at" in log
        assert "trusted-setup-had-its-secret" in log
        assert "branch-setup-ran" not in log
        assert "maintenance-without-secret" in log
        assert "maintenance-with-secret" not in log
        [pull] = forge.pulls(OWNER, REPO)
        assert pull.base == BRANCH
        assert pull.head.startswith(f"gantry/{live.issue_number}-")
        head = (await forge.branches(OWNER, REPO))[pull.head]
        assert await git_show(forge, "show", f"{head}:fix.txt") == "2.1\nfixed: fix the date test\n"
        assert (await git_show(forge, "show", "-s", "--format=%P", head)).strip() == start
        assert forge.take_violations() == []
