"""`gantry app create` end to end: a real headless Chromium clicks through the manifest flow
against the GitHub stand-in, then `gantry doctor` passes on what was written."""

from __future__ import annotations

import asyncio
import html
import json
import os
import shutil
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import docker
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from config.settings import load_settings
from forge.auth import generate_key_pair
from forge.server import Forge
from gantry import app_create, app_page, doctor
from gantry.app_credentials import write_secret_file
from gantry.app_manifest import Conversion, ManifestError, parse_manifest
from gantry.cli import build_parser
from tests.support import TEST_BASE_IMAGE, docker_required

PUBLIC_URL = "https://gantry.example.com/bot"
APP_NAME = "Gantry Browser Test"
REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_STEP_S = 60


def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`; CI installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if docker_required():
            pytest.fail("CI is set and chromium is not installed", pytrace=False)
        pytest.skip("chromium is not installed")
    return found


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium driven by Playwright (the system browser, nothing downloaded)."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def read_url(stdout: asyncio.StreamReader) -> str:
    """The local page's address, from the line `gantry app create` prints first."""
    line = (await asyncio.wait_for(stdout.readline(), FLOW_STEP_S)).decode()
    assert line.startswith("Open http://127.0.0.1:"), line
    return line.split()[1]


async def click_through(page: Page, url: str, owner: str) -> str:
    """The operator's clicks: our button, then GitHub's "Create GitHub App"; the final text."""
    await page.goto(url)
    await page.click("#create")
    await page.wait_for_selector(f"text=Create GitHub App for {owner}")
    assert await page.input_value("#name") == "Gantry"
    await page.click("#submit")
    # "Gantry" is taken (as on github.com): the page says so and lets the person rename it.
    error = await page.wait_for_selector("#error")
    assert error is not None
    assert await error.inner_text() == "Name is already in use"
    await page.fill("#name", APP_NAME)
    await page.click("#submit")
    created = await page.wait_for_selector("#created")
    assert created is not None
    return await created.inner_text()


@pytest.mark.parametrize("org", [None, "octo-org"])
async def test_the_button_registers_the_app_and_doctor_passes_right_after(
    org: str | None,
    docker_client: docker.DockerClient,
    forge: Forge,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    forge.register_app("gantry")  # an App named Gantry exists already, as on github.com
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    # GitHub by another name than the local page's 127.0.0.1: another site to the browser, so
    # the page's SameSite cookie must survive a cross-site redirect, as from github.com.
    api_url = forge.api_url.replace("//127.0.0.1:", "//localhost:")
    env |= {"GANTRY_GITHUB_API_URL": api_url, "GANTRY_DATA_DIR": str(tmp_path / "data")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gantry",
        "app",
        "create",
        "--public-url",
        PUBLIC_URL,
        *(["--org", org] if org else []),
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        url = await read_url(proc.stdout)
        page = await browser.new_page()
        shown = await click_through(page, url, org or "gantry-dev")
        out, err = await asyncio.wait_for(proc.communicate(), FLOW_STEP_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    [app] = [a for a in forge.state.apps.values() if a.name == APP_NAME]
    assert f"App id {app.id}" in shown
    assert f"/apps/{app.slug}/installations/new" in out.decode()

    # What GitHub registered is what app.yml asks for, with this server's webhook URL.
    wanted = parse_manifest((REPO_ROOT / "gantry" / "app.yml").read_text())
    assert app.permissions == wanted["default_permissions"]
    assert app.events == tuple(wanted["default_events"])
    assert app.hook_url == f"{PUBLIC_URL}/webhook"
    assert app.owner.login == (org or "gantry-dev")
    assert app.owner.type == ("Organization" if org else "User")

    key = tmp_path / "data" / "github-app.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() == app.keys.private_pem
    dotenv = Path(".env")  # the working directory, where `gantry serve` reads it
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert app.webhook_secret is not None
    assert app.webhook_secret not in out.decode() + err.decode()

    # `gantry doctor` right after, in the same directory and environment.
    for name in ("GANTRY_GITHUB_API_URL", "GANTRY_DATA_DIR"):
        monkeypatch.setenv(name, env[name])
    # The host's default image is one it has (CI has no gantry-universal:latest to pull).
    monkeypatch.setenv("GANTRY_DEFAULT_IMAGE", TEST_BASE_IMAGE)
    settings = load_settings()
    assert settings.github_app_id == app.id
    assert settings.github_private_key_path == key
    assert settings.webhook_secret == app.webhook_secret
    assert str(settings.public_url) == PUBLIC_URL
    results = await doctor.run_checks(settings)
    text = doctor.render(results)
    assert "all checks passed" in text.splitlines()[-1], text
    assert f"authenticated as App {app.slug!r}" in text


async def test_an_existing_key_is_never_replaced_without_force(tmp_path: Path) -> None:
    key = tmp_path / "github-app.pem"
    key.write_text("the key of the App in use\n")
    args = build_parser().parse_args(
        ["app", "create", "--public-url", PUBLIC_URL, "--key-file", str(key)]
    )
    settings = load_settings()
    with pytest.raises(ManifestError, match=r"exists.*--force"):
        app_create.plan_from(settings, args)
    assert app_create.main(settings, args) == 2
    assert key.read_text() == "the key of the App in use\n"
    forced = build_parser().parse_args([*args_list(key), "--force"])
    assert app_create.plan_from(settings, forced).force


def args_list(key: Path) -> list[str]:
    return ["app", "create", "--public-url", PUBLIC_URL, "--key-file", str(key)]


async def test_a_configured_env_file_is_refused_before_anything_is_registered() -> None:
    Path(".env").write_text("GANTRY_GITHUB_APP_ID=7\nGANTRY_GITHUB_PRIVATE_KEY_PATH=/k.pem\n")
    args = build_parser().parse_args(["app", "create", "--public-url", PUBLIC_URL])
    with pytest.raises(ManifestError, match="already sets GANTRY_GITHUB_APP_ID"):
        app_create.plan_from(load_settings(Path("nowhere.env")), args)


async def test_without_a_public_url_it_says_what_to_set() -> None:
    args = build_parser().parse_args(["app", "create"])
    with pytest.raises(ManifestError, match="GANTRY_PUBLIC_URL"):
        app_create.plan_from(load_settings(), args)


async def test_a_redirect_not_from_the_operators_browser_is_refused_and_its_code_left_alone(
    forge: Forge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CSRF, and another user of the host: the attacker's own manifest code, sent to the
    operator's callback with a guessed or even the real state, is not taken."""
    monkeypatch.setenv("GANTRY_GITHUB_API_URL", forge.api_url)
    args = build_parser().parse_args(
        ["app", "create", "--public-url", PUBLIC_URL, "--key-file", str(tmp_path / "k.pem")]
    )
    plan = app_create.plan_from(load_settings(None), args)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    flow = asyncio.create_task(app_page.run_flow(plan, on_ready=ready.set_result, wait_s=30))
    try:
        url = await ready
        base = url.split("?", 1)[0].rstrip("/")
        real_state = await operator_state(url)
        attacker_code = await attacker_manifest_code(forge)
        async with aiohttp.ClientSession() as attacker:
            for page_url in (base + "/", base + "/?token=guessed"):
                async with attacker.get(page_url) as response:
                    assert response.status == 403
                    assert real_state not in await response.text()
            for state in ("guessed", "", real_state):
                query = {"code": attacker_code, "state": state}
                async with attacker.get(base + app_page.CALLBACK_PATH, params=query) as response:
                    assert response.status == 403
        assert attacker_code in forge.state.manifest_codes
        assert not (tmp_path / "k.pem").exists()
        assert not Path(".env").exists()
        assert not flow.done()
    finally:
        flow.cancel()


async def operator_state(url: str) -> str:
    """The state in the form the operator's page posts (as if it leaked from their history)."""
    async with aiohttp.ClientSession() as operator, operator.get(url) as response:
        assert response.status == 200
        assert app_page.COOKIE in response.cookies
        action = (await response.text()).split('action="', 1)[1].split('"', 1)[0]
    return parse_qs(urlsplit(html.unescape(action)).query)["state"][0]


async def attacker_manifest_code(forge: Forge) -> str:
    """Run the stand-in's flow for another App, as an attacker would, and keep its code."""
    manifest = {
        "name": "Evil",
        "url": "https://evil.example",
        "hook_attributes": {"url": "https://evil.example/hook"},
        "redirect_url": "https://evil.example/back",
    }
    async with aiohttp.ClientSession() as session:
        new = f"{forge.base_url}/settings/apps/new"
        async with session.post(new, data={"manifest": json.dumps(manifest)}) as page:
            action = (await page.text()).split('action="', 1)[1].split('"', 1)[0]
        create = forge.base_url + action
        async with session.post(create, data={"name": "Evil"}, allow_redirects=False) as done:
            location = done.headers["Location"]
    return location.split("code=", 1)[1].split("&", 1)[0]


def test_the_report_warns_when_the_environment_hides_what_was_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other, new = generate_key_pair(), generate_key_pair()
    (tmp_path / "other.pem").write_text(other.private_pem)
    monkeypatch.setenv("GANTRY_GITHUB_APP_ID", "7")
    monkeypatch.setenv("GANTRY_GITHUB_PRIVATE_KEY_PATH", str(tmp_path / "other.pem"))
    args = build_parser().parse_args([*args_list(tmp_path / "new.pem"), "--force"])
    plan = app_create.plan_from(load_settings(), args)
    conversion = Conversion(42, "g", "G", "https://gh/apps/g", "me", new.private_pem, "s", "c", "x")
    app_page.write_credentials(plan, conversion)
    text = app_create.report(plan, conversion)
    assert "warning: GANTRY_GITHUB_* variables in the environment override .env" in text
    assert (tmp_path / "new.pem").read_text() == new.private_pem
    assert "GANTRY_GITHUB_APP_ID='42'" in Path(".env").read_text()


def test_a_missing_manifest_says_which_flag_to_pass(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [*args_list(tmp_path / "k.pem"), "--manifest", str(tmp_path / "app.yml")]
    )
    with pytest.raises(ManifestError, match="pass --manifest"):
        app_create.plan_from(load_settings(), args)


def test_secret_files_are_private_and_a_key_is_never_overwritten(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("GANTRY_DATA_DIR=/srv\n")
    env.chmod(0o644)
    write_secret_file(env, "GANTRY_DATA_DIR=/srv\nGANTRY_GITHUB_WEBHOOK_SECRET='s'\n", replace=True)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text().endswith("'s'\n")
    key = tmp_path / "keys" / "app.pem"
    write_secret_file(key, "first", replace=False)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_secret_file(key, "second", replace=False)
    assert key.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "keys"]


async def test_a_code_github_will_not_trade_ends_the_run_and_writes_nothing(
    forge: Forge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GANTRY_GITHUB_API_URL", forge.api_url)
    args = build_parser().parse_args(args_list(tmp_path / "k.pem"))
    plan = app_create.plan_from(load_settings(None), args)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    flow = asyncio.create_task(app_page.run_flow(plan, on_ready=ready.set_result, wait_s=30))
    url = await ready
    # unsafe: keep cookies of an IP address (127.0.0.1), as a browser does.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as client,
        client.get(url) as opened,
    ):
        action = (await opened.text()).split('action="', 1)[1].split('"', 1)[0]
        state = parse_qs(urlsplit(html.unescape(action)).query)["state"][0]
        callback = url.split("?", 1)[0].rstrip("/") + app_page.CALLBACK_PATH
        query = {"code": "expired-or-used", "state": state}
        async with client.get(callback, params=query) as response:
            assert response.status == 502
            assert "did not trade the code" in await response.text()
    with pytest.raises(ManifestError, match="did not trade the code"):
        await flow
    assert not (tmp_path / "k.pem").exists()
    assert not Path(".env").exists()
