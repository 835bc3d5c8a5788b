"""The stand-in's App manifest flow: the new-App pages, the redirect, the one-time exchange."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_jwt

from forge.data import ensure_github_data
from forge.openapi import load_spec
from forge.server import Forge

MANIFEST = {
    "name": "Octo Helper",
    "url": "https://example.com/helper",
    "description": "Helps.",
    "hook_attributes": {"url": "https://helper.example.com/webhook", "active": True},
    "redirect_url": "http://127.0.0.1:9/back?from=manifest",
    "public": False,
    "default_permissions": {"contents": "write", "metadata": "read"},
    "default_events": ["issues"],
}
CONVERSION_SCHEMA = (
    "#/paths/~1app-manifests~1{code}~1conversions/post/responses/201/content/"
    "application~1json/schema"
)
ACTION_RE = re.compile(r'<form method="post" action="([^"]+)"')


async def post_manifest(
    session: aiohttp.ClientSession, forge: Forge, manifest: Any, path: str = "/settings/apps/new"
) -> tuple[int, str]:
    """Post the form a manifest flow starts with; the status and the page."""
    url = f"{forge.base_url}{path}?state=s3cret"
    async with session.post(url, data={"manifest": json.dumps(manifest)}) as response:
        return response.status, await response.text()


async def press_create(session: aiohttp.ClientSession, forge: Forge, page: str, name: str) -> str:
    """Press "Create GitHub App" with `name`; the redirect's Location."""
    found = ACTION_RE.search(page)
    assert found is not None, page
    url = forge.base_url + found.group(1)
    async with session.post(url, data={"name": name}, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        return response.headers["Location"]


async def run_flow(session: aiohttp.ClientSession, forge: Forge, path: str = "") -> str:
    """The whole browser side of the flow; the code the redirect carries."""
    status, page = await post_manifest(session, forge, MANIFEST, path or "/settings/apps/new")
    assert status == 200, page
    query = parse_qs(urlsplit(await press_create(session, forge, page, "Octo Helper")).query)
    return query["code"][0]


async def convert(session: aiohttp.ClientSession, forge: Forge, code: str) -> tuple[int, Any]:
    """`POST /app-manifests/{code}/conversions` without credentials."""
    url = f"{forge.api_url}/app-manifests/{code}/conversions"
    headers = {"Accept": "application/vnd.github+json"}
    async with session.post(url, headers=headers) as response:
        return response.status, await response.json()


async def test_the_flow_redirects_with_code_and_state_then_trades_the_code_once(
    forge: Forge,
) -> None:
    async with aiohttp.ClientSession() as session:
        status, page = await post_manifest(session, forge, MANIFEST)
        assert status == 200
        assert "Create GitHub App for gantry-dev" in page
        assert 'value="Octo Helper"' in page
        location = await press_create(session, forge, page, "Octo Helper")
        parts = urlsplit(location)
        assert location.startswith("http://127.0.0.1:9/back?")
        query = parse_qs(parts.query)
        assert query["from"] == ["manifest"]
        assert query["state"] == ["s3cret"]
        status, body = await convert(session, forge, query["code"][0])
        assert status == 201
        again, _ = await convert(session, forge, query["code"][0])
        assert again == 404
        gh = GitHubAPI(session, "forge-tests", base_url=forge.api_url)
        jwt = get_jwt(app_id=str(body["id"]), private_key=body["pem"])
        app = await gh.getitem("/app", jwt=jwt)
    spec = load_spec(ensure_github_data().openapi)
    assert list(spec.validator(CONVERSION_SCHEMA).iter_errors(body)) == []
    assert body["slug"] == "octo-helper"
    assert body["webhook_secret"]
    assert body["owner"]["login"] == "gantry-dev"
    assert app["permissions"] == MANIFEST["default_permissions"]
    assert app["events"] == MANIFEST["default_events"]
    [record] = [a for a in forge.state.apps.values() if a.id == body["id"]]
    assert record.hook_url == "https://helper.example.com/webhook"
    assert record.webhook_secret == body["webhook_secret"]


async def test_an_organization_registers_the_app_it_owns(forge: Forge) -> None:
    async with aiohttp.ClientSession() as session:
        code = await run_flow(session, forge, "/organizations/octo-org/settings/apps/new")
        status, body = await convert(session, forge, code)
    assert status == 201
    assert body["owner"]["login"] == "octo-org"
    assert body["owner"]["type"] == "Organization"


async def test_a_code_expires_after_an_hour(forge: Forge) -> None:
    async with aiohttp.ClientSession() as session:
        code = await run_flow(session, forge)
        forge.advance_clock(3601)
        status, body = await convert(session, forge, code)
    assert status == 404
    assert body["message"] == "Not Found"


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ({**MANIFEST, "url": ""}, "url is required"),
        ({**MANIFEST, "hook_attributes": {"active": True}}, "hook_attributes.url is required"),
        ({**MANIFEST, "default_permissions": {"contnets": "write"}}, "contnets"),
        ({**MANIFEST, "default_permissions": {"contents": "admin"}}, "not valid"),
        (["not", "an", "object"], "JSON object"),
    ],
)
async def test_a_manifest_github_would_refuse_is_refused(
    forge: Forge, manifest: Any, reason: str
) -> None:
    async with aiohttp.ClientSession() as session:
        status, page = await post_manifest(session, forge, manifest)
    assert status == 422
    assert reason in page
    assert not forge.state.pending_manifests


async def test_a_name_in_use_is_refused_on_the_page(forge: Forge) -> None:
    forge.register_app("octo-helper")
    async with aiohttp.ClientSession() as session:
        _, page = await post_manifest(session, forge, MANIFEST)
        found = ACTION_RE.search(page)
        assert found is not None
        url = forge.base_url + found.group(1)
        async with session.post(url, data={"name": "Octo Helper"}) as response:
            assert response.status == 422
            assert "Name is already in use" in await response.text()
    assert not forge.state.manifest_codes
