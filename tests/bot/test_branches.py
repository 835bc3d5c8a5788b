"""Branch names: sanitised, unique, and accepted by git."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.branches import BranchNameError, branch_name, check_ref_format, slugify


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Fix the flaky date test", "fix-the-flaky-date-test"),
        ("Crème brûlée: résumé", "creme-brulee-resume"),
        ("$(touch /tmp/x)", "touch-tmp-x"),
        ('zzz";echo${IFS}x;#', "zzz-echo-ifs-x"),
        ("--force\nrm -rf /", "force-rm-rf"),
        ("../../.git/config.lock", "git-config-lock"),
        ("日本語だけ", "task"),
        ("", "task"),
        ("a" * 100, "a" * 40),
        ("word " * 20, "word-word-word-word-word-word-word-word"),
    ],
)
def test_slugs(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_branch_names_are_made_unique() -> None:
    taken = {"gantry/7-fix-it", "gantry/7-fix-it-2"}
    assert branch_name("gantry/", 7, "Fix it", set()) == "gantry/7-fix-it"
    assert branch_name("gantry/", 7, "Fix it", taken) == "gantry/7-fix-it-3"


def test_running_out_of_names_is_an_error() -> None:
    taken = {"gantry/1-x"} | {f"gantry/1-x-{n}" for n in range(2, 1000)}
    with pytest.raises(BranchNameError):
        branch_name("gantry/", 1, "x", taken)


@given(st.text())
def test_any_title_gives_a_safe_slug(title: str) -> None:
    slug = slugify(title)
    assert slug
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not slug.startswith("-")
    assert not slug.endswith("-")
    assert len(slug) <= 40


@pytest.mark.parametrize("title", ["$(touch /tmp/x)", "-rf", "a..b", "x.lock", "@{-1}", "ü"])
async def test_git_accepts_every_generated_name(title: str) -> None:
    await check_ref_format(branch_name("gantry/", 12, title, set()))


@pytest.mark.parametrize("bad", ["-x", "a..b", "a b", "x.lock", "a~1", "a/.b", "gantry/"])
async def test_git_refuses_bad_names(bad: str) -> None:
    with pytest.raises(BranchNameError):
        await check_ref_format(bad)
