"""Between phases nothing survives: what the agent leaves running stops before the checks,
and what a check leaves running stops before collect."""

from __future__ import annotations

from runner.task import TaskState
from tests.bot.conftest import OWNER, REPO, Gantry
from tests.e2e.conftest import comment_on, config_with, git_show, set_config, wait_final

# A writer in the background, double-forked into its own session, still appending when the
# agent's shell has long exited.
AGENT = """\
setsid sh -c '(while true; do date >> leak.txt; sleep 0.05; done) &' </dev/null >/dev/null 2>&1
(while true; do echo x >> leak.txt; sleep 0.05; done) </dev/null >/dev/null 2>&1 &
sleep 0.3
echo done > fix.txt
"""
# The check fails when leak.txt still grows while it watches.
CHECK = 'checks: [\'a=$(wc -c < leak.txt); sleep 1; b=$(wc -c < leak.txt); test "$a" = "$b"\']\n'


async def test_the_agents_background_writers_are_gone_before_the_checks(live: Gantry) -> None:
    await set_config(live, config_with(AGENT, CHECK))
    await comment_on(live, live.issue_number, "@gantry leave something running")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    [pull] = live.forge.pulls(OWNER, REPO)
    body = pull.issue.body or ""
    assert "| ✅ | `a=$(wc -c < leak.txt)" in body, body


# A check that passes at once and leaves a writer behind: it waits until the check's shell
# has exited, then keeps appending to late.txt (and making late-*.txt) through collect.
LATE_WRITER = (
    "checks: ['p=$$; (while kill -0 $p 2>/dev/null; do sleep 0.01; done; "
    "while true; do date >> late.txt; touch late-$(date +%s%N).txt; sleep 0.01; done) "
    "</dev/null >/dev/null 2>&1 &']\n"
)


async def test_a_checks_background_writer_is_gone_before_collect(live: Gantry) -> None:
    await set_config(live, config_with("echo done > fix.txt", LATE_WRITER))
    await comment_on(live, live.issue_number, "@gantry leave a writer in a check")
    [task] = await wait_final(live, 1)
    assert task.state is TaskState.SUCCEEDED
    [pull] = live.forge.pulls(OWNER, REPO)
    head = (await live.forge.branches(OWNER, REPO))[pull.head]
    changed = await git_show(live.forge, "diff", "--name-only", f"{head}^", head)
    assert changed.split() == ["fix.txt"], changed
