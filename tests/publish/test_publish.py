"""Publishing through the stand-in's git smart HTTP: commit, co-author, follow-ups, races."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from forge.server import Forge
from runner.mirror import Mirrors
from runner.publish import (
    Publication,
    PublishError,
    PushRejectedError,
    bot_identity,
    commit_message,
    publish,
    subject_line,
    user_identity,
)

BOT = bot_identity("gantry", 41898282)
ALICE = user_identity("alice", 583231)


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


async def git_out(forge: Forge, *args: str) -> str:
    """git on the stand-in's bare repo, without blocking its event loop."""
    path = forge.repo("octo", "hello").path
    return await asyncio.to_thread(sh, path, "git", *args)


def make_patch(tmp: Path, mirror: Path, base: str, files: dict[str, str]) -> bytes:
    """What the container would hand back: a binary diff against the base."""
    work = tmp / f"agent-{len(list(tmp.iterdir()))}"
    sh(tmp, "git", "clone", "--quiet", str(mirror), str(work))
    sh(work, "git", "checkout", "--quiet", base)
    for name, text in files.items():
        (work / name).write_text(text)
    sh(work, "git", "add", "-A")
    return subprocess.run(
        ["git", "diff", "--cached", "--binary", base], cwd=work, check=True, capture_output=True
    ).stdout


async def setup(forge: Forge, tmp_path: Path) -> tuple[Mirrors, str, str, str]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# hello\n")
    await forge.create_repo("octo", "hello", source)
    creds = forge.register_app("gantry")
    token = forge.mint_token(forge.install(creds.app_id, "octo", ["hello"]))
    base = (await forge.branches("octo", "hello"))["main"]
    mirrors = Mirrors(tmp_path / "data")
    await mirrors.ensure("octo/hello", forge.git_url("octo", "hello"), base, token)
    return mirrors, token, base, forge.git_url("octo", "hello")


def publication(
    mirrors: Mirrors,
    start: str,
    patch: bytes,
    token: str,
    url: str,
    expected: str | None = None,
    message: str = "",
) -> Publication:
    return Publication(
        mirror=mirrors.path("octo/hello"),
        start_sha=start,
        patch=patch,
        branch="gantry/1-fix-readme",
        message=message or commit_message("Fix the README", "", ALICE),
        author=BOT,
        clone_url=url,
        token=token,
        expected_remote=expected,
    )


def test_commit_message_and_identities() -> None:
    assert BOT.email == "41898282+gantry[bot]@users.noreply.github.com"
    message = commit_message("fix it\nmore words", "Details.", ALICE)
    assert message == (
        "fix it\n\nDetails.\n\nCo-authored-by: alice <583231+alice@users.noreply.github.com>\n"
    )
    assert len(subject_line("word " * 40)) <= 72


def test_a_first_line_too_long_for_a_subject_is_kept_whole_in_the_body() -> None:
    line = (
        "Fix the midnight rollover in the date helper so that users in negative UTC offsets "
        "keep the right calendar day"
    )
    message = commit_message(line, "Details.", ALICE)
    subject, _, rest = message.partition("\n\n")
    assert len(subject) <= 72
    assert subject.endswith("…")
    assert rest.startswith(f"{line}\n\nDetails.\n\nCo-authored-by: ")


async def test_publish_a_new_branch_then_a_follow_up(forge: Forge, tmp_path: Path) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    mirror = mirrors.path("octo/hello")
    patch = make_patch(tmp_path, mirror, base, {"README.md": "# hello\nfixed\n", "new.txt": "n\n"})
    first = await publish(publication(mirrors, base, patch, token, url))
    assert (await forge.branches("octo", "hello"))["gantry/1-fix-readme"] == first
    show = await git_out(forge, "show", "--format=%an <%ae>%n%B", "--stat", first)
    assert show.startswith("gantry[bot] <41898282+gantry[bot]@users.noreply.github.com>\nFix")
    assert "Co-authored-by: alice <583231+alice@users.noreply.github.com>" in show
    assert "new.txt" in show
    assert await git_out(forge, "rev-parse", f"{first}^") == f"{base}\n"

    await mirrors.ensure("octo/hello", url, first, token)
    follow = make_patch(tmp_path, mirror, first, {"new.txt": "n2\n"})
    second = await publish(publication(mirrors, first, follow, token, url, expected=first))
    assert await git_out(forge, "rev-parse", f"{second}^") == f"{first}\n"
    assert (await forge.branches("octo", "hello"))["gantry/1-fix-readme"] == second


async def test_a_branch_that_moved_is_not_overwritten(forge: Forge, tmp_path: Path) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    patch = make_patch(tmp_path, mirrors.path("octo/hello"), base, {"a.txt": "a\n"})
    first = await publish(publication(mirrors, base, patch, token, url))
    theirs = await forge.commit_files("octo", "hello", "gantry/1-fix-readme", {"b.txt": "b\n"})
    with pytest.raises(PushRejectedError):
        await publish(publication(mirrors, base, patch, token, url, expected=first))
    assert (await forge.branches("octo", "hello"))["gantry/1-fix-readme"] == theirs


async def test_a_new_branch_never_replaces_an_existing_one(forge: Forge, tmp_path: Path) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    existing = await forge.commit_files("octo", "hello", "gantry/1-fix-readme", {"x": "x\n"})
    patch = make_patch(tmp_path, mirrors.path("octo/hello"), base, {"a.txt": "a\n"})
    with pytest.raises(PushRejectedError):
        await publish(publication(mirrors, base, patch, token, url))
    assert (await forge.branches("octo", "hello"))["gantry/1-fix-readme"] == existing


async def test_a_patch_that_does_not_apply_is_a_clear_error(forge: Forge, tmp_path: Path) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    bogus = b"diff --git a/nope b/nope\n--- a/nope\n+++ b/nope\n@@ -1 +1 @@\n-x\n+y\n"
    with pytest.raises(PublishError):
        await publish(publication(mirrors, base, bogus, token, url))
    assert "gantry/1-fix-readme" not in await forge.branches("octo", "hello")


async def test_hostile_text_is_carried_as_data(forge: Forge, tmp_path: Path) -> None:
    mirrors, token, base, url = await setup(forge, tmp_path)
    marker = tmp_path / "pwned"
    hostile = f'$(touch {marker}) `touch {marker}` zzz";echo${{IFS}}x;#\n-rf\n--amend'
    patch = make_patch(tmp_path, mirrors.path("octo/hello"), base, {"a.txt": "a\n"})
    message = commit_message(hostile, hostile, ALICE)
    sha = await publish(publication(mirrors, base, patch, token, url, message=message))
    assert not marker.exists()
    body = await git_out(forge, "log", "-1", "--format=%B", sha)
    assert f"touch {marker}" in body


async def test_a_wrong_token_fails_without_leaking_it(forge: Forge, tmp_path: Path) -> None:
    mirrors, _, base, url = await setup(forge, tmp_path)
    patch = make_patch(tmp_path, mirrors.path("octo/hello"), base, {"a.txt": "a\n"})
    with pytest.raises(PublishError) as info:
        await publish(publication(mirrors, base, patch, "ghs_wrongtoken123", url))
    assert "ghs_wrongtoken123" not in str(info.value)
