"""REST endpoints Gantry uses, driven through gidgethub's aiohttp client."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from gidgethub import BadRequest, InvalidField, ValidationError

from tests.forge.conftest import OWNER, REPO, Seeded, run_git

REPO_API = f"/repos/{OWNER}/{REPO}"


async def _push_branch(seeded: Seeded, tmp_path: Path, branch: str) -> str:
    """Push a one-commit branch; return its SHA."""
    checkout = tmp_path / branch.replace("/", "-")
    url = seeded.forge.git_url(OWNER, REPO, seeded.token)
    assert (await run_git("clone", "--quiet", url, str(checkout))).returncode == 0
    (checkout / "NEW.md").write_text(branch)
    await run_git("checkout", "--quiet", "-b", branch, cwd=checkout)
    await run_git("add", "NEW.md", cwd=checkout)
    await run_git("commit", "--quiet", "-m", f"Add {branch}", cwd=checkout)
    assert (await run_git("push", "--quiet", "origin", branch, cwd=checkout)).returncode == 0
    return (await run_git("rev-parse", "HEAD", cwd=checkout)).stdout.strip()


async def test_contents_file_is_base64_from_the_bare_repo(seeded: Seeded) -> None:
    item = await seeded.gh.getitem(f"{REPO_API}/contents/.github/gantry.yml?ref=main")
    assert (item["type"], item["path"], item["encoding"]) == (
        "file",
        ".github/gantry.yml",
        "base64",
    )
    assert base64.b64decode(item["content"]) == b"checks: [pytest -q]\n"
    assert item["size"] == len(b"checks: [pytest -q]\n")


async def test_contents_directory_and_missing_file(seeded: Seeded) -> None:
    listing = await seeded.gh.getitem(f"{REPO_API}/contents/src/widgets")
    assert [(e["name"], e["type"]) for e in listing] == [("__init__.py", "file")]
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/contents/AGENTS.md")
    assert caught.value.status_code == 404
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/contents/README.md?ref=no-such-branch")
    assert caught.value.status_code == 404


async def test_contents_at_a_pushed_ref(seeded: Seeded, tmp_path: Path) -> None:
    sha = await _push_branch(seeded, tmp_path, "feature")
    item = await seeded.gh.getitem(f"{REPO_API}/contents/NEW.md?ref={sha}")
    assert base64.b64decode(item["content"]) == b"feature"


@pytest.mark.parametrize(
    ("role", "legacy"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
async def test_collaborator_permission(seeded: Seeded, role: str, legacy: str) -> None:
    seeded.forge.set_permission(OWNER, REPO, "alice", role)
    body = await seeded.gh.getitem(f"{REPO_API}/collaborators/alice/permission")
    assert (body["permission"], body["role_name"], body["user"]["login"]) == (legacy, role, "alice")
    assert body["user"]["type"] == "User"


async def test_permission_of_bot_and_unknown_user(seeded: Seeded) -> None:
    seeded.forge.set_permission(OWNER, REPO, "dependabot[bot]", "write", kind="Bot")
    body = await seeded.gh.getitem(f"{REPO_API}/collaborators/dependabot[bot]/permission")
    assert body["user"]["type"] == "Bot"
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/collaborators/nobody/permission")
    assert caught.value.status_code == 404


async def test_comments_create_update_list(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(
        OWNER, REPO, "Flaky date test", "It fails at midnight", "alice"
    )
    human = seeded.forge.add_comment(OWNER, REPO, issue.number, "@gantry fix it", "alice")
    created = await seeded.gh.post(
        f"{REPO_API}/issues/{issue.number}/comments", data={"body": "Working on it"}
    )
    assert created["user"] == {**created["user"], "login": "gantry[bot]", "type": "Bot"}
    assert created["html_url"].endswith(f"/issues/{issue.number}#issuecomment-{created['id']}")

    updated = await seeded.gh.patch(
        f"{REPO_API}/issues/comments/{created['id']}", data={"body": "- [x] prepare"}
    )
    assert updated["body"] == "- [x] prepare"
    listed = [c async for c in seeded.gh.getiter(f"{REPO_API}/issues/{issue.number}/comments")]
    assert [(c["id"], c["body"]) for c in listed] == [
        (human, "@gantry fix it"),
        (created["id"], "- [x] prepare"),
    ]
    got = await seeded.gh.getitem(f"{REPO_API}/issues/{issue.number}")
    assert (got["title"], got["comments"], got["user"]["login"]) == ("Flaky date test", 2, "alice")
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.patch(f"{REPO_API}/issues/comments/{human}", data={"body": "hijack"})
    assert caught.value.status_code == 403


async def test_comment_list_paginates(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Many comments")
    for index in range(35):
        seeded.forge.add_comment(OWNER, REPO, issue.number, f"c{index}", "alice")
    bodies = [
        c["body"] async for c in seeded.gh.getiter(f"{REPO_API}/issues/{issue.number}/comments")
    ]
    assert bodies == [f"c{i}" for i in range(35)]


async def test_reactions_on_issue_and_review_comments(seeded: Seeded) -> None:
    issue = seeded.forge.create_issue(OWNER, REPO, "Bug")
    comment = seeded.forge.add_comment(OWNER, REPO, issue.number, "@gantry go", "alice")
    url = f"{REPO_API}/issues/comments/{comment}/reactions"
    first = await seeded.gh.post(url, data={"content": "eyes"})
    again = await seeded.gh.post(url, data={"content": "eyes"})
    assert first["id"] == again["id"]
    assert first["content"] == "eyes"
    await seeded.gh.post(url, data={"content": "rocket"})
    listed = [r["content"] async for r in seeded.gh.getiter(url)]
    assert listed == ["eyes", "rocket"]
    assert seeded.forge.reactions(comment) == [("eyes", "gantry[bot]"), ("rocket", "gantry[bot]")]

    review = seeded.forge.add_comment(OWNER, REPO, issue.number, "@gantry nit", "bob", review=True)
    review_url = f"{REPO_API}/pulls/comments/{review}/reactions"
    created = await seeded.gh.post(review_url, data={"content": "confused"})
    assert created["user"]["login"] == "gantry[bot]"
    assert [r["content"] async for r in seeded.gh.getiter(review_url)] == ["confused"]
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.post(
            f"{REPO_API}/pulls/comments/{comment}/reactions", data={"content": "+1"}
        )
    assert caught.value.status_code == 404


async def test_pulls_create_get_list_update(seeded: Seeded, tmp_path: Path) -> None:
    sha = await _push_branch(seeded, tmp_path, "gantry/3-fix")
    created = await seeded.gh.post(
        f"{REPO_API}/pulls",
        data={
            "title": "Fix",
            "head": "gantry/3-fix",
            "base": "main",
            "body": "Closes #1",
            "draft": True,
        },
    )
    number = created["number"]
    assert created["head"]["ref"] == "gantry/3-fix"
    assert created["head"]["sha"] == sha
    assert created["base"]["ref"] == "main"
    assert created["draft"] is True
    assert created["head"]["repo"]["full_name"] == f"{OWNER}/{REPO}"
    assert created["html_url"].endswith(f"/{OWNER}/{REPO}/pull/{number}")
    assert (created["state"], created["body"]) == ("open", "Closes #1")

    got = await seeded.gh.getitem(f"{REPO_API}/pulls/{number}")
    assert got["id"] == created["id"]
    listed = [p async for p in seeded.gh.getiter(f"{REPO_API}/pulls?head={OWNER}:gantry/3-fix")]
    assert [p["number"] for p in listed] == [number]

    updated = await seeded.gh.patch(
        f"{REPO_API}/pulls/{number}", data={"title": "Fix it", "body": "new", "state": "closed"}
    )
    assert (updated["title"], updated["body"], updated["state"]) == ("Fix it", "new", "closed")
    assert [p async for p in seeded.gh.getiter(f"{REPO_API}/pulls")] == []
    closed = [p["number"] async for p in seeded.gh.getiter(f"{REPO_API}/pulls?state=closed")]
    assert closed == [number]
    assert [p.issue.title for p in seeded.forge.pulls(OWNER, REPO)] == ["Fix it"]


async def test_pull_refusals_match_github(seeded: Seeded, tmp_path: Path) -> None:
    with pytest.raises(InvalidField) as invalid:
        await seeded.gh.post(
            f"{REPO_API}/pulls", data={"title": "x", "head": "nope", "base": "main"}
        )
    assert invalid.value.status_code == 422
    await _push_branch(seeded, tmp_path, "dup")
    data = {"title": "x", "head": "dup", "base": "main"}
    await seeded.gh.post(f"{REPO_API}/pulls", data=data)
    with pytest.raises(ValidationError) as caught:
        await seeded.gh.post(f"{REPO_API}/pulls", data=data)
    assert "A pull request already exists for octo-org:dup." in str(caught.value)


async def test_check_runs_create_update_get(seeded: Seeded) -> None:
    head = (await seeded.forge.branches(OWNER, REPO))["main"]
    created = await seeded.gh.post(
        f"{REPO_API}/check-runs",
        data={
            "name": "gantry",
            "head_sha": head,
            "status": "in_progress",
            "details_url": "http://x/t/1",
        },
    )
    assert (created["status"], created["conclusion"], created["head_sha"]) == (
        "in_progress",
        None,
        head,
    )
    assert created["started_at"] is not None
    assert created["app"]["slug"] == "gantry"

    updated = await seeded.gh.patch(
        f"{REPO_API}/check-runs/{created['id']}",
        data={"conclusion": "success", "output": {"title": "Checks", "summary": "✅ pytest -q"}},
    )
    assert (updated["status"], updated["conclusion"]) == ("completed", "success")
    assert updated["output"]["summary"] == "✅ pytest -q"
    got = await seeded.gh.getitem(f"{REPO_API}/check-runs/{created['id']}")
    assert got["completed_at"] is not None
    listed = await seeded.gh.getitem(f"{REPO_API}/commits/main/check-runs")
    assert [r["id"] for r in listed["check_runs"]] == [created["id"]]
    assert seeded.forge.check_runs(OWNER, REPO)[0]["conclusion"] == "success"


async def test_check_run_on_unknown_sha_is_422(seeded: Seeded) -> None:
    with pytest.raises(InvalidField) as caught:
        await seeded.gh.post(
            f"{REPO_API}/check-runs", data={"name": "gantry", "head_sha": "0" * 40}
        )
    assert caught.value.status_code == 422


async def test_repository_and_branches(seeded: Seeded) -> None:
    repo = await seeded.gh.getitem(REPO_API)
    assert (repo["full_name"], repo["default_branch"]) == (f"{OWNER}/{REPO}", "main")
    assert repo["owner"]["login"] == OWNER
    branches = [b async for b in seeded.gh.getiter(f"{REPO_API}/branches")]
    heads = await seeded.forge.branches(OWNER, REPO)
    assert [(b["name"], b["commit"]["sha"]) for b in branches] == [("main", heads["main"])]
    branch = await seeded.gh.getitem(f"{REPO_API}/branches/main")
    assert branch["commit"]["commit"]["author"]["date"] == "2024-01-01T00:00:00Z"
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/branches/missing")
    assert caught.value.status_code == 404
