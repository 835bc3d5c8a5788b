"""End to end, the agent attacks the patch: its git config, a fake git (headers that lie to the
workflow refusal and to the choice of nested AGENTS.md checks), a GiB of zeros.

Judged by outcome: what got pushed, what appeared on the host, how much disk the host used
and how large the host's git processes grew (they are this test process's children).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, git_show, set_config, wait_final
from tests.publish.attacks import PeakDisk, children_peak_rss
from tests.support import TEST_BASE_IMAGE

MIB = 1024**2


def progress_of(live: Gantry) -> str:
    comments = live.forge.comments(OWNER, REPO, live.issue_number)
    return "\n".join(c["body"] for c in comments if c["user"] == "gantry[bot]")


async def test_a_mnemonic_prefix_does_not_smuggle_a_workflow_change(live: Gantry) -> None:
    agent = (
        "git config diff.mnemonicPrefix true\n"
        "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml"
    )
    await set_config(live, config_with(agent))
    await comment_on(live, live.issue_number, "@gantry add CI")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.FAILED
    assert "workflows permission" in progress_of(live)
    assert live.forge.pulls(OWNER, REPO) == []
    assert set(await live.forge.branches(OWNER, REPO)) == {"main"}


def fake_git(patch: str) -> str:
    """An agent that leaves a `git` in front of the real one, handing over its own patch."""
    return (
        f"cat > /opt/evil.patch <<'PATCH'\n{patch}PATCH\n"
        "cat > /usr/local/bin/git <<'GIT'\n#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = diff ] && { cat /opt/evil.patch; exit 0; }; done\n'
        'exec /usr/bin/git "$@"\nGIT\n'
        "chmod +x /usr/local/bin/git\n"
        "echo honest > fix.txt"
    )


@pytest.mark.parametrize(
    "patch",
    [
        "diff --git c/.github/workflows/e.yml i/.github/workflows/e.yml\nnew file mode 100644\n"
        "--- /dev/null\n+++ i/.github/workflows/e.yml\n@@ -0,0 +1 @@\n+on: push\n",
        "--- /dev/null\n+++ /tmp/{name}\n@@ -0,0 +1 @@\n+pwned\n"
        "--- /dev/null\n+++ b/../../{name}\n@@ -0,0 +1 @@\n+pwned\n",
    ],
)
async def test_a_fake_git_in_the_container_cannot_get_its_patch_published(
    live: Gantry, tmp_path: Path, patch: str
) -> None:
    name = f"gantry-escape-{uuid.uuid4().hex}"
    await set_config(live, config_with(fake_git(patch.format(name=name))))
    await comment_on(live, live.issue_number, "@gantry do something")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.FAILED, progress_of(live)
    assert live.forge.pulls(OWNER, REPO) == []
    assert set(await live.forge.branches(OWNER, REPO)) == {"main"}
    for parent in (Path("/tmp"), Path(tempfile.gettempdir()), tmp_path, tmp_path.parent):
        assert not (parent / name).exists()


async def test_a_gigabyte_of_zeros_is_refused_before_the_host_writes_it(
    live: Gantry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the host's scratch, watched
    config = (
        f"image: {TEST_BASE_IMAGE}\nagent:\n  command: head -c 1073741824 /dev/zero > zeros.bin\n"
        "network: {setup: off, agent: off}\nresources: {cpus: 1, memory: 2g, pids: 256}\n"
    )
    await set_config(live, config)
    await comment_on(live, live.issue_number, "@gantry write zeros")
    # The host's git runs in this process; its children's peak can only be compared with
    # what earlier tests of the session left (unbounded, this attack took git to 2.1 GB).
    rss_bound = max(children_peak_rss(), 300 * MIB)
    with PeakDisk(tmp_path) as disk:
        [task] = await wait_final(live, 1, seconds=300)
    assert task.state is TaskState.FAILED
    assert "expands to 1,07" in progress_of(live)
    assert live.forge.pulls(OWNER, REPO) == []
    assert disk.peak < 50 * MIB
    assert children_peak_rss() <= rss_bound


# A `git` in front of the real one whose diffs carry mnemonic prefixes (`c/` `i/`) whatever
# the command line says: the headers Gantry asked for are not the headers it gets.
PREFIX_GIT = (
    "cat > /usr/local/bin/git <<'GIT'\n#!/bin/sh\n"
    'for a in "$@"; do [ "$a" = diff ] && {\n'
    '  /usr/bin/git "$@" | sed -e "s#^diff --git a/\\(.*\\) b/#diff --git c/\\1 i/#" '
    '-e "s#^--- a/#--- c/#" -e "s#^+++ b/#+++ i/#"; exit 0; }; done\n'
    'exec /usr/bin/git "$@"\nGIT\n'
    "chmod +x /usr/local/bin/git\n"
)
ROOT_CHECK = "echo the-root-check-ran"
WEB_CHECK = "echo the-web-check-ran"


def agents_with_check(check: str) -> str:
    return f"# Agents\n\n## Testing\n\n```sh\n{check}\n```\n"


async def test_the_checks_follow_the_applied_paths_not_the_containers_headers(
    live: Gantry,
) -> None:
    nested = {"AGENTS.md": agents_with_check(ROOT_CHECK)}
    nested["web/AGENTS.md"] = agents_with_check(WEB_CHECK)
    nested["web/app.txt"] = "old\n"
    await live.forge.commit_files(OWNER, REPO, "main", nested)
    await set_config(live, config_with(PREFIX_GIT + "echo new > web/app.txt"))
    await comment_on(live, live.issue_number, "@gantry change the web app")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED, progress_of(live)
    [pull] = live.forge.pulls(OWNER, REPO)
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    assert await git_show(live.forge, "show", f"{head}:web/app.txt") == "new\n"
    # web/app.txt's nearest AGENTS.md is web's: its check ran, the root's did not.
    body = pull.issue.body or ""
    assert f"| ✅ | `{WEB_CHECK}` | web/AGENTS.md:6 | 0 |" in body
    assert ROOT_CHECK not in body
    # The same prefixes on a workflow change: still refused.
    workflow = "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml"
    await set_config(live, config_with(PREFIX_GIT + "echo newer > web/app.txt\n" + workflow))
    await comment_on(live, live.issue_number, "@gantry add CI")
    second = (await wait_final(live, 2))[1]
    assert second.state is TaskState.FAILED
    assert "workflows permission" in progress_of(live)
    assert [p.head for p in live.forge.pulls(OWNER, REPO)] == [pull.head]
