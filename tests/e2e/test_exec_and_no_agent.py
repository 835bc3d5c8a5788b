"""End to end: an `exec` task and a repository with no agent each become a PR with their diff."""

from __future__ import annotations

from pathlib import Path

from forge.server import Forge
from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, git_show, running_gantry, wait_final
from tests.support import TEST_BASE_IMAGE

CHECK_FMT = """\
# Agents

## Testing

```sh
test -f fmt.txt
```
"""
# No `agent:` at all, and no server-wide agent command: setup and AGENTS.md only.
NO_AGENT_CONFIG = f"""\
image: {TEST_BASE_IMAGE}
network: {{setup: off, agent: off}}
resources: {{cpus: 1, memory: 512m, pids: 256}}
"""
# A formatter as the first check: what it rewrites is the task's diff. Setup's own output
# lands before the snapshot, so it is not.
FORMATTER_AGENTS = """\
# Agents

## Setup

```sh
echo built > setup-output.txt
```

## Checks

```sh
sed -i 's/[[:space:]]*$//' src.txt
! grep -q '[[:space:]]$' src.txt
```
"""


async def pull_head(gantry: Gantry) -> tuple[str, str]:
    """The only PR's branch and the SHA it points at."""
    [pull] = gantry.forge.pulls(OWNER, REPO)
    return pull.head, (await gantry.forge.branches(OWNER, REPO))[pull.head]


def gantry_comments(gantry: Gantry) -> list[str]:
    comments = gantry.forge.comments(OWNER, REPO, gantry.issue_number)
    return [c["body"] for c in comments if c["user"] == "gantry[bot]"]


async def test_an_exec_command_runs_instead_of_the_agent_and_its_change_is_the_pr(
    forge: Forge, tmp_path: Path
) -> None:
    files = {
        ".github/gantry.yml": config_with("echo agent > agent.txt"),
        "AGENTS.md": CHECK_FMT,
        "README.md": "# hello\n",
    }
    async with running_gantry(forge, tmp_path, files) as gantry:
        body = "@gantry exec sh -c 'echo formatted > fmt.txt && rm README.md'"
        await comment_on(gantry, gantry.issue_number, body)
        [task] = await wait_final(gantry, 1)
        assert task.state is TaskState.SUCCEEDED, gantry_comments(gantry)
        assert task.kind == "exec"
        [pull] = forge.pulls(OWNER, REPO)
        branch, head = await pull_head(gantry)
        assert branch == f"gantry/{gantry.issue_number}-fix-the-flaky-date-test"
        assert await git_show(forge, "show", f"{head}:fmt.txt") == "formatted\n"
        changed = await git_show(forge, "show", "--name-status", "--format=%B", head)
        assert changed.startswith("sh -c 'echo formatted > fmt.txt && rm README.md'\n")
        assert sorted(changed.strip().splitlines()[-2:]) == ["A\tfmt.txt", "D\tREADME.md"]
        assert "agent.txt" not in changed  # the configured agent never ran
        assert "| ✅ | `test -f fmt.txt` | AGENTS.md:6 | 0 |" in (pull.issue.body or "")
        assert not pull.draft


async def test_with_no_agent_what_the_checks_rewrite_is_the_pr(
    forge: Forge, tmp_path: Path
) -> None:
    files = {
        ".github/gantry.yml": NO_AGENT_CONFIG,
        "AGENTS.md": FORMATTER_AGENTS,
        "src.txt": "def f():   \n    return 1\t\n",
    }
    async with running_gantry(forge, tmp_path, files) as gantry:
        assert gantry.settings.agent_command is None
        await comment_on(gantry, gantry.issue_number, "@gantry tidy the whitespace")
        [task] = await wait_final(gantry, 1)
        assert task.state is TaskState.SUCCEEDED, gantry_comments(gantry)
        [pull] = forge.pulls(OWNER, REPO)
        _, head = await pull_head(gantry)
        assert await git_show(forge, "show", f"{head}:src.txt") == "def f():\n    return 1\n"
        changed = await git_show(forge, "show", "--name-status", "--format=", head)
        assert changed.strip() == "M\tsrc.txt"  # setup's output is not part of the diff
        body = pull.issue.body or ""
        assert "| ✅ | `sed -i 's/[[:space:]]*$//' src.txt` | AGENTS.md:12 | 0 |" in body
        assert "| ✅ | `! grep -q '[[:space:]]$' src.txt` | AGENTS.md:13 | 0 |" in body
        [progress] = gantry_comments(gantry)
        assert "no agent configured" in progress, progress
