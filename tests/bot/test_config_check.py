"""The "Gantry config" check run, from signed pull_request deliveries through the stand-in."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from gidgethub import routing

from bot import config_check
from bot.app import SERVICES, read_delivery
from bot.config_check import (
    MAX_AGENTS_BYTES_CHECKED,
    NOT_CHECKED,
    Annotation,
    CheckReport,
    ConfigChanges,
    Validation,
    build_report,
    check_run_requests,
    config_changes,
)
from bot.routing import Dispatch
from config.agents_md import parse_agents_md
from config.repo_config import ConfigError, parse_repo_config
from config.settings import Settings
from forge.server import Forge
from gantry.compose import create_app
from tests.support import slowest_answer

SECRET = "config-check-secret"
OWNER, NAME = "acme", "api"
CONFIG = ".github/gantry.yml"
GOOD_CONFIG = "image: ghcr.io/acme/dev:1\nnetwork:\n  agent: off\ntimeouts:\n  setup: 20m\n"
# Line 3: an unknown key; line 5: a duration that is not one.
BROKEN_CONFIG = "image: ghcr.io/acme/dev:1\nnetwork:\n  agnet: off\ntimeouts:\n  setup: soon\n"
AGENTS = "# Tests\n\n```sh\npytest -q\n```\n"
# Only this test module's router: bot/app.py's ROUTER is composed elsewhere.
ROUTER = routing.Router(config_check.router)


@dataclass
class World:
    forge: Forge
    server: TestServer
    installation_id: int

    @property
    def url(self) -> str:
        return str(self.server.make_url("/config-webhook"))

    async def pull_event(self, action: str, number: int) -> int:
        """A real `pull_request` example for this PR (its current head merged in)."""
        return await self.forge.send_webhook(
            self.url,
            SECRET,
            "pull_request",
            action,
            owner=OWNER,
            repo=NAME,
            installation_id=self.installation_id,
            sender="alice",
            number=number,
        )

    async def settle(self) -> None:
        await self.server.app[SERVICES].background.drain()

    async def open_pull(self, branch: str, files: dict[str, str | bytes | None]) -> int:
        """Push a branch changing `files`, open a PR from it, and deliver `opened`."""
        await self.forge.commit_files(OWNER, NAME, branch, files)
        number = self.forge.open_pull(OWNER, NAME, branch).issue.number
        assert await self.pull_event("opened", number) == 200
        await self.settle()
        return number

    async def head(self, branch: str) -> str:
        return (await self.forge.branches(OWNER, NAME))[branch]

    def runs(self) -> list[dict[str, Any]]:
        return self.forge.check_runs(OWNER, NAME)


async def config_webhook(request: web.Request) -> web.Response:
    """The intake's edge (signature, parsing) and dispatch, with only this feature's router."""
    services = request.app[SERVICES]
    event = await read_delivery(request, SECRET)
    ctx = Dispatch(services.intake, event.delivery_id, services.tokens)
    await ROUTER.dispatch(event, ctx)
    return web.json_response({"outcomes": list(ctx.outcomes)})


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest_asyncio.fixture
async def world(forge: Forge, tmp_path: Path) -> AsyncIterator[World]:
    files = {CONFIG: GOOD_CONFIG, "AGENTS.md": AGENTS, "README.md": "# api\n"}
    await forge.create_repo(OWNER, NAME, write_tree(tmp_path / "src", files))
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, OWNER, [NAME])
    settings = Settings(
        github_webhook_secret=SECRET,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=tmp_path / "data",
    )
    app = create_app(settings, workers=False)
    app.router.add_post("/config-webhook", config_webhook)
    server = TestServer(app)
    await server.start_server()
    try:
        yield World(forge, server, installation_id)
    finally:
        await server.close()


# ---- through the stand-in ---------------------------------------------------------------


async def test_a_pr_that_breaks_the_config_fails_with_annotations_on_its_lines(
    world: World,
) -> None:
    await world.open_pull("break", {CONFIG: BROKEN_CONFIG})
    [run] = world.runs()
    assert (run["name"], run["head_sha"]) == ("Gantry config", await world.head("break"))
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    notes = run["annotations"]
    assert [(a["path"], a["start_line"], a["end_line"]) for a in notes] == [
        (CONFIG, 3, 3),
        (CONFIG, 5, 5),
    ]
    assert {a["annotation_level"] for a in notes} == {"failure"}
    assert notes[0]["message"].startswith("network.agnet: unknown key (did you mean agent?)")
    assert notes[1]["message"].startswith("timeouts.setup:")
    assert run["output"]["title"] == "2 error(s) in the Gantry config"
    assert ".github/gantry.yml:3: network.agnet: unknown key" in str(run["output"]["summary"])


async def test_a_pr_with_a_number_too_large_to_read_fails_at_its_line(world: World) -> None:
    """Such a number once crashed the check: the PR got no verdict at all."""
    await world.open_pull("break", {CONFIG: GOOD_CONFIG + "env:\n  X: " + "9" * 5000 + "\n"})
    [run] = world.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    [note] = run["annotations"]
    assert (note["path"], note["start_line"]) == (CONFIG, 7)
    assert note["message"].startswith("env.X: a number longer than 100 characters")


async def test_a_push_that_fixes_the_config_gets_a_passing_run_on_the_new_head(
    world: World,
) -> None:
    number = await world.open_pull("break", {CONFIG: BROKEN_CONFIG})
    await world.forge.commit_files(OWNER, NAME, "break", {CONFIG: GOOD_CONFIG + "checks: [make]\n"})
    assert await world.pull_event("synchronize", number) == 200
    await world.settle()
    broken, fixed = world.runs()
    assert broken["conclusion"] == "failure"
    assert (fixed["head_sha"], fixed["conclusion"]) == (await world.head("break"), "success")
    assert fixed["annotations"] == []
    assert "is valid (its `checks` win over AGENTS.md)" in str(fixed["output"]["summary"])


async def test_a_pr_that_fixes_a_broken_default_branch_config_passes(world: World) -> None:
    await world.forge.commit_files(OWNER, NAME, "main", {CONFIG: BROKEN_CONFIG})
    await world.open_pull("fix", {CONFIG: GOOD_CONFIG})
    [run] = world.runs()
    assert (run["conclusion"], run["output"]["title"]) == ("success", "Gantry config is valid")


async def test_a_pr_that_touches_no_config_gets_no_check_run(world: World) -> None:
    number = await world.open_pull("docs", {"README.md": "# api\n\nMore.\n", "src/app.py": "x\n"})
    assert await world.pull_event("reopened", number) == 200
    await world.settle()
    assert world.runs() == []
    asked = {(r.method, r.path) for r in world.forge.requests if "/repos/" in r.path}
    assert asked == {("GET", f"/repos/{OWNER}/{NAME}/pulls/{number}/files")}


async def test_other_pull_request_actions_are_not_checked(world: World) -> None:
    await world.forge.commit_files(OWNER, NAME, "break", {CONFIG: BROKEN_CONFIG})
    number = world.forge.open_pull(OWNER, NAME, "break").issue.number
    for action in ("closed", "labeled", "ready_for_review"):
        assert await world.pull_event(action, number) == 200
    await world.settle()
    assert world.runs() == []


async def test_a_changed_agents_md_is_checked_at_the_head(world: World) -> None:
    nested = (
        "# Web\n\n## Running tests\n\n```console\n$ npm test\n```\n\n"
        "## Deploy\n\n```sh\nmake deploy\n```\n"
    )
    await world.open_pull("agents", {"web/AGENTS.md": nested})
    [run] = world.runs()
    assert run["conclusion"] == "success"
    [warning] = run["annotations"]
    assert (warning["path"], warning["start_line"], warning["annotation_level"]) == (
        "web/AGENTS.md",
        11,
        "warning",
    )
    assert 'under "Deploy"' in warning["message"]
    summary = str(run["output"]["summary"])
    assert "`web/AGENTS.md:6`: `npm test`" in summary
    assert CONFIG not in summary  # gantry.yml was not changed, so it is not reported


async def test_removing_the_config_passes_and_says_so(world: World) -> None:
    await world.open_pull("drop", {CONFIG: None})
    [run] = world.runs()
    assert run["conclusion"] == "success"
    assert f"`{CONFIG}` is removed by this pull request." in str(run["output"]["summary"])


async def test_more_than_50_errors_are_added_in_batches(world: World) -> None:
    many = "".join(f"unknown_{n}: 1\n" for n in range(120))
    await world.open_pull("many", {CONFIG: many})
    [run] = world.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert [a["start_line"] for a in run["annotations"]] == list(range(1, 121))
    posts = [r for r in world.forge.requests if "/check-runs" in r.path]
    assert [(r.method, r.status) for r in posts] == [("POST", 201), ("PATCH", 200), ("PATCH", 200)]


async def test_a_failing_github_call_leaves_no_half_made_run_and_the_server_serves_on(
    world: World,
) -> None:
    world.forge.inject_fault("GET", "/repos/{owner}/{repo}/contents/*", "error", status=403)
    await world.open_pull("break", {CONFIG: BROKEN_CONFIG})
    assert world.runs() == []
    number = world.forge.pulls(OWNER, NAME)[0].issue.number
    assert await world.pull_event("synchronize", number) == 200
    await world.settle()
    assert [r["conclusion"] for r in world.runs()] == ["failure"]


async def test_a_pr_full_of_slow_markdown_leaves_the_server_answering(world: World) -> None:
    # About 2.5 s of markdown-it each: on the event loop, every answer waited for them.
    hostile = "![" * (96 * 1024)
    files: dict[str, str | bytes | None] = {f"d{n}/AGENTS.md": hostile for n in range(2)}
    stop = threading.Event()
    health = str(world.server.make_url("/healthz"))
    poll = asyncio.ensure_future(asyncio.to_thread(slowest_answer, health, stop))
    try:
        await world.open_pull("slow", files)
    finally:
        stop.set()
    assert await poll < 1.0
    [run] = world.runs()
    assert run["conclusion"] == "success"  # both were still checked


async def test_agents_md_past_the_checks_budget_is_listed_as_not_checked(world: World) -> None:
    part = MAX_AGENTS_BYTES_CHECKED // 3  # with its heading and block, two fit, not three
    text = "# Tests\n\n```sh\npytest\n```\n" + "x" * part
    names = [f"d{n}/AGENTS.md" for n in range(4)]
    await world.open_pull("big", dict.fromkeys(names, text))
    [run] = world.runs()
    summary = str(run["output"]["summary"])
    assert f"{NOT_CHECKED}: `d2/AGENTS.md`, `d3/AGENTS.md`." in summary
    assert all(f"`{name}:4`: `pytest`" in summary for name in names[:2])
    assert all(f"`{name}:" not in summary for name in names[2:])


# ---- pure parts -------------------------------------------------------------------------


def entry(name: str, status: str = "modified", previous: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"filename": name, "status": status}
    if previous is not None:
        found["previous_filename"] = previous
    return found


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([entry("README.md"), entry("src/a.py", "added")], ConfigChanges()),
        ([entry(CONFIG)], ConfigChanges((CONFIG,))),
        (
            [entry("docs/AGENTS.md", "added"), entry("AGENTS.md")],
            ConfigChanges(("AGENTS.md", "docs/AGENTS.md")),
        ),
        ([entry(CONFIG, "removed")], ConfigChanges((), (CONFIG,))),
        ([entry("NOTES.md", "renamed", "AGENTS.md")], ConfigChanges((), ("AGENTS.md",))),
        (
            [entry("a/AGENTS.md", "renamed", "b/AGENTS.md")],
            ConfigChanges(("a/AGENTS.md",), ("b/AGENTS.md",)),
        ),
        (
            [entry(".github/gantry.yaml"), entry("agents.md"), entry("x/AGENTS.md.bak")],
            ConfigChanges(),
        ),
    ],
)
def test_which_changes_matter(files: list[dict[str, Any]], expected: ConfigChanges) -> None:
    assert config_changes(files) == expected


def report_with(count: int) -> CheckReport:
    notes = tuple(Annotation(CONFIG, n, "failure", "bad", "x") for n in range(1, count + 1))
    return CheckReport("failure" if count else "success", "t", "s", notes)


@pytest.mark.parametrize(
    ("count", "batches"), [(0, [0]), (1, [1]), (50, [50]), (51, [50, 1]), (120, [50, 50, 20])]
)
def test_annotations_go_50_per_request_and_the_run_completes_with_the_last(
    count: int, batches: list[int]
) -> None:
    create, updates = check_run_requests(report_with(count), "a" * 40)
    bodies = [create, *updates]
    assert [len(b["output"]["annotations"]) for b in bodies] == batches
    assert [b.get("conclusion") for b in bodies][-1] == ("failure" if count else "success")
    assert all("conclusion" not in b for b in bodies[:-1])
    assert create["status"] == ("completed" if len(bodies) == 1 else "in_progress")
    assert (create["name"], create["head_sha"]) == ("Gantry config", "a" * 40)


def test_a_config_error_becomes_failures_and_a_failing_report() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_repo_config("image: x:1\nresources:\n  cpus: lots\n")
    report = build_report(Validation(config=caught.value))
    assert report.conclusion == "failure"
    [note] = report.annotations
    assert note.to_json() == {
        "path": CONFIG,
        "start_line": 3,
        "end_line": 3,
        "annotation_level": "failure",
        "message": str(caught.value.problems[0]),
        "title": "resources.cpus",
    }


def test_ignored_blocks_warn_but_pass_and_commands_are_listed() -> None:
    doc = parse_agents_md(
        "```sh\necho hi\n```\n\n# Setup\n\n```sh\npip install .\n```\n", "AGENTS.md"
    )
    report = build_report(Validation(docs=(doc,)))
    assert report.conclusion == "success"
    assert report.title == "Gantry config is valid, with 1 warning(s)"
    assert [(a.line, a.level) for a in report.annotations] == [(1, "warning")]
    assert "`AGENTS.md:8`: `pip install .`" in report.summary
    assert "before any heading" in report.annotations[0].message


def test_a_huge_summary_is_cut_to_githubs_limit() -> None:
    doc = parse_agents_md("# Tests\n\n```sh\n" + "x" * 200 + "\n" * 1 + "```\n", "AGENTS.md")
    docs = tuple(doc for _ in range(400))
    report = build_report(Validation(docs=docs))
    assert len(report.summary) <= 65_535
    assert report.summary.endswith("at most 65,535 characters)")
