"""End to end: a task on a repository of an organisation whose `.github` repository holds
defaults, with one of them overridden by the repository and capped by the operator."""

from __future__ import annotations

from pathlib import Path

from forge.server import Forge
from runner.store import TaskState
from tests.bot.conftest import OWNER, REPO
from tests.e2e.conftest import AGENTS, comment_on, config_with, git_show, running_gantry, wait_final

# The organisation's defaults: an env var every task gets, and 1g of memory.
ORG_CONFIG = "env:\n  ORG_GREETING: hello from the org\nresources:\n  memory: 1g\n"
# The agent writes what it was given: the org's env var and its container's memory limit.
AGENT = (
    'printf "%s\\n" "$ORG_GREETING" > fix.txt\n'
    "cat /sys/fs/cgroup/memory.max > memory.txt 2>/dev/null"
    " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes > memory.txt"
)


async def test_an_org_default_overridden_and_capped_reaches_the_task(
    forge: Forge, tmp_path: Path
) -> None:
    org_source = tmp_path / "org"
    (org_source / ".github").mkdir(parents=True)
    (org_source / ".github" / "gantry.yml").write_text(ORG_CONFIG)
    await forge.create_repo(OWNER, ".github", org_source)
    # The repository asks for 768m (over the org's 1g): the operator allows 384m at most.
    files = {
        ".github/gantry.yml": config_with(AGENT).replace("memory: 512m", "memory: 768m"),
        "AGENTS.md": AGENTS,
    }
    async with running_gantry(forge, tmp_path, files, max_memory="384m") as live:
        forge.state.installations[live.installation_id].repos.add(".github")
        await comment_on(live, live.issue_number, "@gantry say hello")
        [task] = await wait_final(live, 1)
        comments = live.forge.comments(OWNER, REPO, live.issue_number)
        assert task.state is TaskState.SUCCEEDED, comments
        [pull] = live.forge.pulls(OWNER, REPO)
        head = (await live.forge.branches(OWNER, REPO))[pull.head]
        assert await git_show(live.forge, "show", f"{head}:fix.txt") == "hello from the org\n"
        limit = await git_show(live.forge, "show", f"{head}:memory.txt")
        assert limit.strip() == str(384 * 1024**2)
        [progress] = [c["body"] for c in comments if c["user"] == "gantry[bot]"]
        assert "prepare" in progress
        assert "capped by the operator: resources.memory 768m → 384m" in progress
