"""Clone and push over git's smart HTTP with installation tokens; pushes show up in REST."""

from __future__ import annotations

from pathlib import Path

from tests.forge.conftest import OWNER, REPO, Seeded, run_git

BRANCH = "gantry/1-fix-typo"


async def _clone(seeded: Seeded, token: str, dest: Path) -> int:
    url = seeded.forge.git_url(OWNER, REPO, token)
    return (await run_git("clone", "--quiet", url, str(dest))).returncode


async def _commit_and_push(seeded: Seeded, checkout: Path, token: str, branch: str) -> str:
    """Commit a change on `branch` in `checkout`, push it with `token`; return stderr."""
    (checkout / "CHANGELOG.md").write_text("fixed\n")
    await run_git("checkout", "--quiet", "-b", branch, cwd=checkout)
    await run_git("add", "CHANGELOG.md", cwd=checkout)
    await run_git("commit", "--quiet", "-m", "Fix typo", cwd=checkout)
    url = seeded.forge.git_url(OWNER, REPO, token)
    result = await run_git("push", "--quiet", url, f"HEAD:refs/heads/{branch}", cwd=checkout)
    return result.stderr if result.returncode else ""


async def test_clone_and_push_with_valid_token(seeded: Seeded, tmp_path: Path) -> None:
    checkout = tmp_path / "clone"
    assert await _clone(seeded, seeded.token, checkout) == 0
    assert (checkout / "src/widgets/__init__.py").read_text() == "VERSION = '1.0'\n"

    assert await _commit_and_push(seeded, checkout, seeded.token, BRANCH) == ""
    local_head = (await run_git("rev-parse", "HEAD", cwd=checkout)).stdout.strip()

    branch = await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}/branches/{BRANCH}")
    assert branch["commit"]["sha"] == local_head
    assert branch["commit"]["commit"]["message"] == "Fix typo"
    names = [b["name"] async for b in seeded.gh.getiter(f"/repos/{OWNER}/{REPO}/branches")]
    assert names == [BRANCH, "main"]

    pull = await seeded.gh.post(
        f"/repos/{OWNER}/{REPO}/pulls",
        data={"title": "Fix typo", "head": BRANCH, "base": "main", "body": "Closes #1"},
    )
    assert pull["head"]["sha"] == local_head


async def test_pull_head_follows_later_pushes(seeded: Seeded, tmp_path: Path) -> None:
    checkout = tmp_path / "clone"
    assert await _clone(seeded, seeded.token, checkout) == 0
    assert await _commit_and_push(seeded, checkout, seeded.token, BRANCH) == ""
    pull = await seeded.gh.post(
        f"/repos/{OWNER}/{REPO}/pulls", data={"title": "t", "head": BRANCH, "base": "main"}
    )
    (checkout / "CHANGELOG.md").write_text("fixed again\n")
    await run_git("commit", "--quiet", "-am", "Follow-up", cwd=checkout)
    url = seeded.forge.git_url(OWNER, REPO, seeded.token)
    assert (await run_git("push", "--quiet", url, BRANCH, cwd=checkout)).returncode == 0
    new_head = (await run_git("rev-parse", "HEAD", cwd=checkout)).stdout.strip()

    again = await seeded.gh.getitem(f"/repos/{OWNER}/{REPO}/pulls/{pull['number']}")
    assert again["head"]["sha"] == new_head != pull["head"]["sha"]


async def test_clone_refused_with_wrong_token(seeded: Seeded, tmp_path: Path) -> None:
    assert await _clone(seeded, "ghs_not-a-real-token", tmp_path / "clone") == 128
    assert not (tmp_path / "clone").exists()


async def test_clone_refused_with_expired_token(seeded: Seeded, tmp_path: Path) -> None:
    seeded.forge.expire_tokens()
    result = await run_git(
        "clone", seeded.forge.git_url(OWNER, REPO, seeded.token), str(tmp_path / "clone")
    )
    assert result.returncode == 128
    assert "Authentication failed" in result.stderr


async def test_push_refused_with_wrong_and_expired_token(seeded: Seeded, tmp_path: Path) -> None:
    checkout = tmp_path / "clone"
    assert await _clone(seeded, seeded.token, checkout) == 0

    wrong = await _commit_and_push(seeded, checkout, "ghs_wrong", BRANCH)
    assert "Authentication failed" in wrong
    seeded.forge.expire_tokens()
    expired = await _commit_and_push(seeded, checkout, seeded.token, BRANCH + "-2")
    assert "Authentication failed" in expired

    assert set(await seeded.forge.branches(OWNER, REPO)) == {"main"}


async def test_token_of_another_installation_sees_no_repo(seeded: Seeded, tmp_path: Path) -> None:
    await seeded.forge.create_repo("someone-else", "private-stuff")
    other = seeded.forge.install(seeded.app.app_id, "someone-else", ["private-stuff"])
    result = await run_git(
        "clone",
        seeded.forge.git_url(OWNER, REPO, seeded.forge.mint_token(other)),
        str(tmp_path / "clone"),
    )
    assert result.returncode == 128
    assert "not found" in result.stderr
