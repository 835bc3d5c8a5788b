"""The plan comment and what `go` makes of it (as edited)."""

from __future__ import annotations

from bot.plans import go_request, plan_comment, plan_text


def test_a_plan_comment_gives_back_its_plan_even_after_an_edit() -> None:
    body = plan_comment("1. Add the flag.\n2. Test it.\n", 7, "gantry")
    assert body.startswith("1. Add the flag.\n2. Test it.\n\n---\nComment `@gantry go`")
    assert body.endswith("<!-- gantry:plan task=7 -->")
    assert plan_text(body) == "1. Add the flag.\n2. Test it."
    edited = body.replace("2. Test it.", "2. Test it.\n3. Document it.")
    assert plan_text(edited) == "1. Add the flag.\n2. Test it.\n3. Document it."
    assert plan_text("---\nno footer here\n<!-- gantry:plan task=7 -->") == "---\nno footer here"


def test_go_attaches_the_plan_to_the_request() -> None:
    assert go_request(" add a flag ", "1. a\n2. b") == (
        "add a flag\n\nCarry out this plan, agreed on the thread:\n\n1. a\n2. b"
    )


def test_a_plan_too_long_for_a_comment_is_cut_before_its_footer_and_marker() -> None:
    body = plan_comment("- a step\n" * 10_000, 7, "gantry", limit=1000)
    assert len(body) <= 1000
    assert body.endswith("Comment `@gantry go` to carry this plan out; edit this comment first "
                         "to change the plan.\n\n<!-- gantry:plan task=7 -->")  # fmt: skip
    assert plan_text(body).endswith("- a step\n\n…(cut to fit GitHub's limit)")
