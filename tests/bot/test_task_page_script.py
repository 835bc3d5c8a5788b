"""The task page's live script, run by Node against a stand-in DOM and EventSource."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.task_page import live_script
from tests.support import docker_required

HARNESS = Path(__file__).with_name("task_page_harness.js")
STREAM = "5/log?sig=abc&offset=10"


def run_script(tmp_path: Path, events: list[tuple[str, Any]]) -> dict[str, Any]:
    """What the script did to the page after these stream events."""
    node = shutil.which("node")
    if node is None:
        if docker_required():  # CI: a missing tool must not pass silently
            pytest.fail("CI is set and node is not installed", pytrace=False)
        pytest.skip("node is not installed")
    tag = live_script(STREAM, "n0nce")
    script = tmp_path / "live.js"
    script.write_text(tag.removeprefix('<script nonce="n0nce">').removesuffix("</script>"))
    fed = tmp_path / "events.json"
    fed.write_text(json.dumps(events))
    done = subprocess.run(
        [node, str(HARNESS), str(script), str(fed)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_lines_go_to_the_log_and_check_lines_to_the_checks_too(tmp_path: Path) -> None:
    page = run_script(
        tmp_path,
        [
            ("lines", {"lines": ["[agent] <b>hi</b>", "[checks] $ pytest"]}),
            ("lines", {"lines": ["[checks] 1 passed"]}),
        ],
    )
    assert page["url"] == STREAM
    assert page["log"] == "[agent] <b>hi</b>\n[checks] $ pytest\n[checks] 1 passed\n"
    assert page["checks"] == "[checks] $ pytest\n[checks] 1 passed\n"
    assert not page["closed"]


def test_phases_and_state_are_replaced_and_the_end_closes_and_reloads(tmp_path: Path) -> None:
    agent = {"name": "agent", "status": "running", "seconds": None, "note": ""}
    done = {"name": "agent", "status": "done", "seconds": 2.25, "note": "ok"}
    page = run_script(
        tmp_path,
        [
            ("phases", {"phases": [agent]}),
            ("phases", {"phases": [done]}),
            ("state", {"state": "succeeded"}),
            ("end", {"state": "succeeded"}),
            ("lines", {"lines": ["after the end"]}),
        ],
    )
    assert page["phases"] == [["agent", "done", "2.3 s", "ok"]]
    assert page["state"] == "succeeded"
    assert (page["closed"], page["reloaded"], page["live"]) == (True, True, "ended")
    assert page["log"] == ""
