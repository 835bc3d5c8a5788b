"""Metrics end to end: tasks run on the stand-in and the real engine, an agent that asks its
model through the gateway, and `/metrics` scraped from the internal listener after each."""

from __future__ import annotations

import json
from pathlib import Path

from forge.models import ModelStandIn
from forge.server import Forge
from gantry.metrics import METRICS
from runner.results import PHASES
from runner.store import TaskState
from tests.bot.conftest import Gantry
from tests.e2e.conftest import AGENTS, comment_on, config_with, running_gantry, wait_final
from tests.support import Scrape, scrape

# One model request through the gateway (the provider's usual variables point at it), then
# an edit: the checks in AGENTS.md want fix.txt.
ASK_MODEL = """\
python3 - <<'EOF'
import json, os, urllib.request
body = json.dumps({"model": "gpt-test", "input": "say hi"}).encode()
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/responses", body,
    {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"},
)
print(urllib.request.urlopen(request).read()[:200])
EOF
printf 'fixed: %s\\n' "$GANTRY_PROMPT" > fix.txt
"""


def phase_counts(found: Scrape) -> dict[tuple[str, str], float]:
    series = found.series("gantry_phase_duration_seconds_count")
    return {(dict(labels)["phase"], dict(labels)["outcome"]): n for labels, n in series.items()}


async def test_task_runs_move_phases_cache_gateway_and_task_metrics(
    forge: Forge, tmp_path: Path
) -> None:
    files = {".github/gantry.yml": config_with(ASK_MODEL), "AGENTS.md": AGENTS}
    async with (
        ModelStandIn() as model,
        running_gantry(
            forge,
            tmp_path,
            files,
            metrics_address="127.0.0.1:0",
            openai_base_url=f"{model.url()}/v1",
            openai_api_key="sk-operator-key-for-metrics",
        ) as live,
    ):
        address = live.server.app[METRICS].address
        assert address is not None
        url = f"http://{address[0]}:{address[1]}/metrics"
        idle = await scrape(url)
        assert phase_counts(idle) == {}
        assert idle("gantry_tasks", state="succeeded") == 0

        await comment_on(live, live.issue_number, "@gantry fix the flaky date test")
        [task] = await wait_final(live, 1)
        assert task.state is TaskState.SUCCEEDED, await task_comments(live)
        first = await scrape(url)
        assert phase_counts(first) == {(phase, "done"): 1 for phase in PHASES}
        assert first("gantry_phase_duration_seconds_sum", phase="agent", outcome="done") > 0
        assert first("gantry_tasks_finished_total", conclusion="published") == 1
        assert first("gantry_cache_lookups_total", result="miss") == 1
        assert first("gantry_cache_lookups_total", result="hit") == 0
        assert first("gantry_tasks", state="succeeded") == 1
        assert first("gantry_queue_depth") == 0
        assert first("gantry_webhook_deliveries_total", outcome="accepted") == 1
        assert first("gantry_deliveries_handled_total", outcome="queued") == 1

        [asked] = model.model_requests()
        assert asked.usage is not None
        assert first("gantry_gateway_requests_total", provider="openai", status="200") == 1
        usage = json.loads(await live.services.store.usage(task.id) or "{}")
        spent = (usage["input_tokens"], usage["output_tokens"])
        assert spent == (asked.usage.input_tokens, asked.usage.output_tokens)
        assert spent[0] > 0
        assert (
            first("gantry_gateway_tokens_total", provider="openai", direction="input"),
            first("gantry_gateway_tokens_total", provider="openai", direction="output"),
        ) == spent

        await comment_on(live, live.issue_number, "@gantry once more")
        tasks = await wait_final(live, 2)
        assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 2
        second = await scrape(url)
        assert second("gantry_cache_lookups_total", result="hit") == 1
        assert second("gantry_cache_lookups_total", result="miss") == 1
        assert second("gantry_tasks", state="succeeded") == 2
        assert second("gantry_gateway_requests_total", provider="openai", status="200") == 2
        assert phase_counts(second) == {(phase, "done"): 2 for phase in PHASES}
        assert second("gantry_tasks_finished_total", conclusion="published") == 2
    assert live.server.app[METRICS].address is None  # the listener went with the app


async def task_comments(live: Gantry) -> list[str]:
    """The bot's comments on the test issue (why a task failed, for the assertion message)."""
    found = live.forge.comments("octo", "hello", live.issue_number)
    return [c["body"] for c in found if c["user"] == "gantry[bot]"]
