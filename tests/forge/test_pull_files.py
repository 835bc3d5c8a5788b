"""A PR's changed files, contents at a SHA, and check-run annotations in the stand-in."""

from __future__ import annotations

import base64

import pytest
from gidgethub import BadRequest

from tests.forge.conftest import OWNER, REPO, Seeded

REPO_API = f"/repos/{OWNER}/{REPO}"


def annotation(line: int) -> dict[str, object]:
    return {
        "path": ".github/gantry.yml",
        "start_line": line,
        "end_line": line,
        "annotation_level": "failure",
        "message": f"problem on line {line}",
    }


async def test_commit_files_adds_changes_and_deletes_on_a_new_branch(seeded: Seeded) -> None:
    forge = seeded.forge
    main = (await forge.branches(OWNER, REPO))["main"]
    files = {"docs/new.md": "new\n", "README.md": "# changed\n", "src/widgets/__init__.py": None}
    sha = await forge.commit_files(OWNER, REPO, "topic", files)
    second = await forge.commit_files(OWNER, REPO, "topic", {"docs/new.md": b"newer\n"})
    heads = await forge.branches(OWNER, REPO)
    assert (heads["main"], heads["topic"]) == (main, second)
    assert sha != second
    got = await seeded.gh.getitem(f"{REPO_API}/contents/docs/new.md?ref={sha}")
    assert base64.b64decode(got["content"]) == b"new\n"
    latest = await seeded.gh.getitem(f"{REPO_API}/contents/docs/new.md?ref=topic")
    assert base64.b64decode(latest["content"]) == b"newer\n"
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/contents/src/widgets/__init__.py?ref={sha}")
    assert caught.value.status_code == 404


async def test_pull_files_lists_each_change_against_the_merge_base(seeded: Seeded) -> None:
    forge = seeded.forge
    await forge.commit_files(
        OWNER,
        REPO,
        "topic",
        {"docs/new.md": "a\nb\n", "README.md": "# widgets\nmore\n", ".github/gantry.yml": None},
    )
    # A later commit on main is not part of the PR's diff.
    await forge.commit_files(OWNER, REPO, "main", {"CHANGELOG.md": "1.0\n"})
    pull = forge.open_pull(OWNER, REPO, "topic", title="Topic")
    files = [f async for f in seeded.gh.getiter(f"{REPO_API}/pulls/{pull.issue.number}/files")]
    by_name = {f["filename"]: f for f in files}
    assert {n: f["status"] for n, f in by_name.items()} == {
        ".github/gantry.yml": "removed",
        "README.md": "modified",
        "docs/new.md": "added",
    }
    assert (by_name["docs/new.md"]["additions"], by_name["docs/new.md"]["changes"]) == (2, 2)
    head = (await forge.branches(OWNER, REPO))["topic"]
    assert by_name["README.md"]["contents_url"].endswith(f"/contents/README.md?ref={head}")


async def test_pull_files_reports_renames_and_paginates(seeded: Seeded) -> None:
    forge = seeded.forge
    many: dict[str, str | bytes | None] = {f"f/{n:02}.txt": f"{n}\n" for n in range(5)}
    await forge.commit_files(
        OWNER,
        REPO,
        "topic",
        {**many, "src/widgets/__init__.py": None, "src/w.py": "VERSION = '1.0'\n"},
    )
    pull = forge.open_pull(OWNER, REPO, "topic")
    url = f"{REPO_API}/pulls/{pull.issue.number}/files?per_page=2"
    files = [f async for f in seeded.gh.getiter(url)]
    assert len(files) == 6
    [renamed] = [f for f in files if f["status"] == "renamed"]
    assert (renamed["filename"], renamed["previous_filename"]) == (
        "src/w.py",
        "src/widgets/__init__.py",
    )


async def test_check_run_annotations_are_appended_across_updates(seeded: Seeded) -> None:
    head = (await seeded.forge.branches(OWNER, REPO))["main"]
    output = {"title": "t", "summary": "s", "annotations": [annotation(n) for n in range(1, 51)]}
    created = await seeded.gh.post(
        f"{REPO_API}/check-runs", data={"name": "cfg", "head_sha": head, "output": output}
    )
    assert created["output"]["annotations_count"] == 50
    more = {"title": "t", "summary": "s2", "annotations": [annotation(51)]}
    updated = await seeded.gh.patch(
        f"{REPO_API}/check-runs/{created['id']}", data={"conclusion": "failure", "output": more}
    )
    assert (updated["output"]["annotations_count"], updated["output"]["summary"]) == (51, "s2")
    url = f"{REPO_API}/check-runs/{created['id']}/annotations?per_page=100"
    listed = [a async for a in seeded.gh.getiter(url)]
    assert [a["start_line"] for a in listed] == list(range(1, 52))
    assert listed[0]["blob_href"].endswith(f"/blob/{head}/.github/gantry.yml")
    [run] = seeded.forge.check_runs(OWNER, REPO)
    assert len(run["annotations"]) == 51
    assert "annotations" not in run["output"]


async def test_more_than_50_annotations_in_one_request_violate_the_contract(
    seeded: Seeded,
) -> None:
    head = (await seeded.forge.branches(OWNER, REPO))["main"]
    output = {"title": "t", "summary": "s", "annotations": [annotation(n) for n in range(1, 52)]}
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.post(
            f"{REPO_API}/check-runs", data={"name": "cfg", "head_sha": head, "output": output}
        )
    assert caught.value.status_code == 422
    [violation] = seeded.forge.take_violations()
    assert violation.path == f"{REPO_API}/check-runs"
    assert seeded.forge.check_runs(OWNER, REPO) == []


async def test_git_trees_list_a_ref_flat_or_recursively(seeded: Seeded) -> None:
    flat = await seeded.gh.getitem(f"{REPO_API}/git/trees/main")
    assert {(e["path"], e["type"]) for e in flat["tree"]} == {
        (".github", "tree"),
        ("README.md", "blob"),
        ("src", "tree"),
    }
    head = (await seeded.forge.branches(OWNER, REPO))["main"]
    deep = await seeded.gh.getitem(f"{REPO_API}/git/trees/{head}?recursive=1")
    assert deep["truncated"] is False
    blobs = {e["path"]: e["size"] for e in deep["tree"] if e["type"] == "blob"}
    assert blobs == {
        ".github/gantry.yml": len("checks: [pytest -q]\n"),
        "README.md": len("# widgets\n"),
        "src/widgets/__init__.py": len("VERSION = '1.0'\n"),
    }
    with pytest.raises(BadRequest) as caught:
        await seeded.gh.getitem(f"{REPO_API}/git/trees/no-such-branch")
    assert caught.value.status_code == 404


async def test_a_forks_pull_request_shows_the_fork_as_its_head(seeded: Seeded) -> None:
    forge = seeded.forge
    sha = await forge.commit_files(OWNER, REPO, "patch-1", {"docs/new.md": "new\n"})
    fork = forge.open_pull(OWNER, REPO, "patch-1", user="mallory", head_repo="mallory/widgets")
    ours = forge.open_pull(OWNER, REPO, "patch-1")
    got = await seeded.gh.getitem(f"{REPO_API}/pulls/{fork.issue.number}")
    head, base = got["head"], got["base"]
    # The same shape as any pull request's ends, with another repository in it.
    assert (head.keys(), head["repo"].keys()) == (base.keys(), base["repo"].keys())
    assert (head["repo"]["full_name"], head["repo"]["fork"]) == ("mallory/widgets", True)
    assert (head["label"], head["ref"], head["sha"]) == ("mallory:patch-1", "patch-1", sha)
    assert (base["repo"]["full_name"], base["repo"]["fork"]) == (f"{OWNER}/{REPO}", False)
    # `head=owner:branch` finds the pull request of that owner's branch only.
    for owner, number in (("mallory", fork.issue.number), (OWNER, ours.issue.number)):
        found = await seeded.gh.getitem(f"{REPO_API}/pulls?head={owner}:patch-1")
        assert [p["number"] for p in found] == [number]
