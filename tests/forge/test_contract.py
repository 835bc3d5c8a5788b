"""Requests GitHub's OpenAPI description rejects are refused and recorded as violations."""

from __future__ import annotations

import aiohttp
import pytest
from gidgethub import BadRequest
from hypothesis import given
from hypothesis import strategies as st

from forge.context import Violation
from forge.data import ensure_github_data
from forge.openapi import OpenAPISpec, load_spec
from tests.forge.conftest import OWNER, REPO, Seeded


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return load_spec(ensure_github_data().openapi)


def test_spec_is_loaded_once_per_process(spec: OpenAPISpec) -> None:
    assert load_spec(ensure_github_data().openapi) is spec


@pytest.mark.parametrize(
    ("method", "path", "template", "params"),
    [
        ("GET", "/repos/o/r/pulls/comments", "/repos/{owner}/{repo}/pulls/comments", {}),
        (
            "GET",
            "/repos/o/r/pulls/7",
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            {"pull_number": "7"},
        ),
        (
            "GET",
            "/repos/o/r/contents/a/b%20c.py",
            "/repos/{owner}/{repo}/contents/{path}",
            {"path": "a/b c.py"},
        ),
        (
            "GET",
            "/repos/o/r/branches/gantry/1-x",
            "/repos/{owner}/{repo}/branches/{branch}",
            {"branch": "gantry/1-x"},
        ),
    ],
)
def test_paths_match_the_most_specific_template(
    spec: OpenAPISpec, method: str, path: str, template: str, params: dict[str, str]
) -> None:
    found = spec.match(method, path)
    assert found is not None
    assert found.operation.template == template
    assert {k: v for k, v in found.path_params.items() if k not in ("owner", "repo")} == params


def test_nullable_and_enum_are_enforced(spec: OpenAPISpec) -> None:
    path = "/repos/o/r/check-runs/1"
    ok = b'{"status": "completed", "conclusion": "success"}'
    assert spec.check("PATCH", path, {}, "application/json", ok)[1] is None
    _, verdict = spec.check("PATCH", path, {}, "application/json", b'{"conclusion": "great"}')
    assert verdict is not None
    assert verdict.status == 422
    _, verdict = spec.check(
        "PATCH", "/repos/o/r/issues/comments/1", {}, "application/json", b'{"body": null}'
    )
    assert verdict is not None
    assert "None" in verdict.reason


async def test_bad_reaction_is_refused_and_recorded(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Bug")
    comment_id = seeded.forge.add_comment(OWNER, REPO, issue.number, "@gantry fix", "alice")
    path = f"/repos/{OWNER}/{REPO}/issues/comments/{comment_id}/reactions"
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.post(path, data={"content": "thumbsup"})
    assert caught.value.status_code == 422
    [violation] = seeded.forge.take_violations()
    assert (violation.method, violation.path) == ("POST", path)
    assert "'thumbsup' is not one of" in violation.reason
    assert seeded.forge.reactions(comment_id) == []
    assert seeded.forge.violations == []


async def test_made_up_path_is_404_and_recorded(seeded: Seeded) -> None:
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}/gantry-status")
    assert caught.value.status_code == 404
    assert seeded.forge.take_violations() == [
        Violation(
            "GET",
            f"/repos/{OWNER}/{REPO}/gantry-status",
            f"no operation GET /repos/{OWNER}/{REPO}/gantry-status in the description",
        )
    ]


async def test_wrong_method_on_real_path_is_recorded(seeded: Seeded) -> None:
    with pytest.raises(BadRequest):
        await seeded.gh.delete(f"/repos/{OWNER}/{REPO}/pulls/1")
    assert [v.path for v in seeded.forge.take_violations()] == [f"/repos/{OWNER}/{REPO}/pulls/1"]


async def test_wrong_content_type_and_bad_query_are_recorded(
    seeded: Seeded, session: aiohttp.ClientSession
) -> None:
    url = f"{seeded.forge.api_url}/repos/{OWNER}/{REPO}/pulls"
    headers = {"Authorization": f"token {seeded.token}"}
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    async with session.post(url, data=b"title=x", headers=form) as response:
        assert response.status == 400
    async with session.get(url, params={"state": "merged"}, headers=headers) as response:
        assert response.status == 422
    async with session.post(
        url, data=b"{not json", headers={"Content-Type": "application/json", **headers}
    ) as response:
        assert response.status == 400
    reasons = [v.reason for v in seeded.forge.take_violations()]
    assert "content type 'application/x-www-form-urlencoded'" in reasons[0]
    assert "'merged' is not one of" in reasons[1]
    assert reasons[2] == "Problems parsing JSON"


async def test_real_operation_the_stand_in_lacks_is_recorded(seeded: Seeded) -> None:
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}/labels")
    assert caught.value.status_code == 404
    [violation] = seeded.forge.take_violations()
    assert "does not implement" in violation.reason


async def test_valid_requests_record_nothing(seeded: Seeded) -> None:
    await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}/pulls?state=all&per_page=5")
    assert seeded.forge.violations == []


@given(
    owner=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True),
    repo=st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True),
    number=st.integers(min_value=1, max_value=10**9),
)
def test_any_repo_name_matches_the_pulls_template(
    spec: OpenAPISpec, owner: str, repo: str, number: int
) -> None:
    found = spec.match("GET", f"/repos/{owner}/{repo}/pulls/{number}")
    assert found is not None
    assert found.path_params == {"owner": owner, "repo": repo, "pull_number": str(number)}
