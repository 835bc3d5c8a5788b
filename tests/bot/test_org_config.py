"""Organisation-wide config through the stand-in: the org's `.github` repository gives the
defaults, one repository overrides them, the operator's ceilings cap them; the config check
and the checkout a task runs with both say so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from gidgethub import routing

from bot import config_check, repo_files
from bot.app import SERVICES, create_app, read_delivery
from bot.routing import Dispatch
from config.loader import Checkout
from config.provenance import Layer
from config.repo_config import ConfigError
from config.settings import Settings
from forge.server import Forge

SECRET = "org-config-secret"
OWNER = "acme"
CONFIG = ".github/gantry.yml"
ORG_SOURCE = "acme/.github:.github/gantry.yml"
# Defaults for every repository of acme: an image, 8g of memory, 45 minutes for the agent.
ORG_CONFIG = "image: ghcr.io/acme/dev:1\nresources:\n  memory: 8g\ntimeouts:\n  agent: 45m\n"
# api asks for more memory than the org default; web keeps the defaults.
API_CONFIG = "resources:\n  memory: 16g\n"
ROUTER = routing.Router(config_check.router)


@dataclass
class World:
    forge: Forge
    server: TestServer
    installation_id: int

    async def open_pull(self, repo: str, branch: str, files: dict[str, str | None]) -> None:
        await self.forge.commit_files(OWNER, repo, branch, files)
        number = self.forge.open_pull(OWNER, repo, branch).issue.number
        status = await self.forge.send_webhook(
            str(self.server.make_url("/org-webhook")),
            SECRET,
            "pull_request",
            "opened",
            owner=OWNER,
            repo=repo,
            installation_id=self.installation_id,
            sender="alice",
            number=number,
        )
        assert status == 200
        await self.server.app[SERVICES].background.drain()

    async def checkout(self, repo: str) -> Checkout | ConfigError:
        """What a task on `repo` runs with: its default branch, read like TaskRunner does."""
        services = self.server.app[SERVICES]
        gh = services.intake.github(self.installation_id)
        return await repo_files.fetch_checkout(gh, f"{OWNER}/{repo}", "main", services.settings)


async def org_webhook(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    event = await read_delivery(request, SECRET)
    ctx = Dispatch(services.intake, event.delivery_id, services.tokens)
    await ROUTER.dispatch(event, ctx)
    return web.json_response({"outcomes": list(ctx.outcomes)})


async def make_repo(forge: Forge, root: Path, name: str, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / name / path).write_text(text)
    await forge.create_repo(OWNER, name, root / name)


async def start(forge: Forge, tmp_path: Path, installed: list[str]) -> AsyncIterator[World]:
    await make_repo(forge, tmp_path / "src", ".github", {CONFIG: ORG_CONFIG})
    await make_repo(forge, tmp_path / "src", "api", {CONFIG: API_CONFIG, "README.md": "api\n"})
    await make_repo(forge, tmp_path / "src", "web", {"README.md": "web\n"})
    creds = forge.register_app("gantry")
    installation_id = forge.install(creds.app_id, OWNER, installed)
    settings = Settings(
        _env_file=None,
        github_webhook_secret=SECRET,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        github_api_url=forge.api_url,
        data_dir=tmp_path / "data",
        max_memory="2g",
    )
    app = create_app(settings, workers=False)
    app.router.add_post("/org-webhook", org_webhook)
    server = TestServer(app)
    await server.start_server()
    try:
        yield World(forge, server, installation_id)
    finally:
        await server.close()


@pytest_asyncio.fixture
async def world(forge: Forge, tmp_path: Path) -> AsyncIterator[World]:
    async for started in start(forge, tmp_path, ["api", "web", ".github"]):
        yield started


@pytest_asyncio.fixture
async def without_org_repo(forge: Forge, tmp_path: Path) -> AsyncIterator[World]:
    """The App installed on api only: the private `.github` repository answers 404."""
    async for started in start(forge, tmp_path, ["api"]):
        yield started


def summary(run: dict[str, Any]) -> str:
    return str(run["output"]["summary"])


async def test_the_config_check_shows_the_org_default_the_override_and_the_cap(
    world: World,
) -> None:
    await world.open_pull("api", "more-memory", {CONFIG: "env: {CI: '1'}\n" + API_CONFIG})
    [run] = world.forge.check_runs(OWNER, "api")
    assert run["conclusion"] == "success"
    assert run["output"]["title"] == "Gantry config is valid, with 1 warning(s)"
    [warning] = run["annotations"]
    assert (warning["path"], warning["start_line"], warning["annotation_level"]) == (
        CONFIG,
        3,
        "warning",
    )
    assert warning["message"] == "resources.memory: 16g is above GANTRY_MAX_MEMORY=2g"
    text = summary(run)
    assert "Capped by the operator's ceilings:" in text
    assert (
        "- `resources.memory` = `2g`: capped by operator: 16g is above GANTRY_MAX_MEMORY=2g, "
        "asked by repository (.github/gantry.yml:3)"
    ) in text
    rows = {line.split(" = ")[0]: line for line in text.splitlines() if " = " in line}
    assert rows["image"].endswith(f"org ({ORG_SOURCE}:1)")
    assert rows["timeouts.agent"].endswith(f"org ({ORG_SOURCE}:5)")
    assert rows["env.CI"].endswith("repository (.github/gantry.yml:1)")
    assert rows["timeouts.setup"].endswith("default")


async def test_a_task_runs_with_the_org_defaults_and_the_operators_cap(world: World) -> None:
    api = await world.checkout("api")
    assert isinstance(api, Checkout)
    config, provenance = api.parsed.config, api.parsed.provenance
    assert config.image == "ghcr.io/acme/dev:1"
    assert config.resources.memory == 2 * 1024**3
    assert config.timeouts.agent.total_seconds() == 45 * 60
    assert provenance is not None
    assert provenance.capped_note() == "capped by the operator: resources.memory 16g → 2g"
    web = await world.checkout("web")
    assert isinstance(web, Checkout)
    # No file of its own: the org's 8g, still capped by the operator.
    memory = web.parsed.provenance.of("resources.memory") if web.parsed.provenance else None
    assert memory is not None
    assert (memory.layer, memory.asked, memory.asked_by) == (Layer.CAPPED, "8g", Layer.ORG)
    assert (memory.source, memory.line) == (ORG_SOURCE, 3)


async def test_a_pr_on_the_org_repository_checks_the_defaults_themselves(world: World) -> None:
    await world.open_pull(".github", "tighten", {CONFIG: ORG_CONFIG + "network:\n  agnet: off\n"})
    [run] = world.forge.check_runs(OWNER, ".github")
    assert run["conclusion"] == "failure"
    assert run["annotations"][0]["message"].startswith("network.agnet: unknown key")
    await world.open_pull(".github", "fine", {CONFIG: ORG_CONFIG + "cache: {ttl: 1h}\n"})
    fine = world.forge.check_runs(OWNER, ".github")[-1]
    assert fine["conclusion"] == "success"
    assert "its `.github/gantry.yml` gives the defaults of every repository" in summary(fine)


async def test_a_broken_org_file_fails_the_repositories_check_in_its_summary(
    world: World,
) -> None:
    await world.forge.commit_files(OWNER, ".github", "main", {CONFIG: "image: [\n"})
    await world.open_pull("api", "touch", {CONFIG: API_CONFIG + "cache: {ttl: 1h}\n"})
    [run] = world.forge.check_runs(OWNER, "api")
    assert run["conclusion"] == "failure"
    assert run["annotations"] == []  # the problem is in another repository
    assert f"**`{ORG_SOURCE}`** has 1 problem(s):" in summary(run)
    assert isinstance(await world.checkout("api"), ConfigError)


async def test_an_org_repository_the_app_cannot_read_gives_no_defaults(
    without_org_repo: World,
) -> None:
    api = await without_org_repo.checkout("api")
    assert isinstance(api, Checkout)
    assert api.parsed.config.image == "gantry-universal:latest"
    provenance = api.parsed.provenance
    assert provenance is not None
    assert {f.layer for f in provenance.files} == {Layer.REPOSITORY}
    asked = [(r.method, r.path, r.status) for r in without_org_repo.forge.requests]
    assert ("GET", f"/repos/{OWNER}/.github/contents/{CONFIG}", 404) in asked
