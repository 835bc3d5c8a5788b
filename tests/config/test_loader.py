"""Which commands run: the config's when it sets them, AGENTS.md's otherwise, with origins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.agents_md import AgentsDoc, Command, Origin, parse_agents_md
from config.loader import (
    Checkout,
    find_agents_files,
    plan_commands,
    read_checkout,
    read_config_text,
)
from config.repo_config import ConfigError, parse_repo_config

ROOT_DOC = parse_agents_md("## Setup\n```sh\nmake deps\n```\n## Tests\n```sh\nmake test\n```\n")
WEB_DOC = parse_agents_md("## Testing\n```sh\nnpm test\n```\n", "web/AGENTS.md")
DOCS = (ROOT_DOC, WEB_DOC)


def test_agents_md_gives_commands_when_the_config_is_silent() -> None:
    plan = plan_commands(parse_repo_config(None), DOCS, ["web/a.ts"])
    assert plan.setup == (Command("make deps", Origin("AGENTS.md", 3)),)
    assert plan.checks == (Command("npm test", Origin("web/AGENTS.md", 3), "web"),)
    assert (plan.setup_source, plan.checks_source) == ("AGENTS.md", "AGENTS.md")
    assert plan.maintenance == ()


def test_explicit_config_wins_with_its_own_lines() -> None:
    parsed = parse_repo_config(
        "setup: |\n  pip install .\nmaintenance: pip install .\nchecks:\n  - tox\n  - ruff check\n"
    )
    plan = plan_commands(parsed, DOCS, ["web/a.ts"])
    assert plan.setup == (Command("pip install .", Origin(".github/gantry.yml", 1)),)
    assert plan.maintenance == (Command("pip install .", Origin(".github/gantry.yml", 3)),)
    assert plan.checks == (
        Command("tox", Origin(".github/gantry.yml", 5)),
        Command("ruff check", Origin(".github/gantry.yml", 6)),
    )
    assert (plan.setup_source, plan.checks_source) == ("config", "config")


def test_empty_checks_in_the_config_turn_agents_md_checks_off() -> None:
    plan = plan_commands(parse_repo_config("checks: []\n"), DOCS, None)
    assert plan.checks == ()
    assert plan.checks_source == "config"
    assert plan.setup_source == "AGENTS.md"


def test_nothing_anywhere() -> None:
    plan = plan_commands(parse_repo_config(None), (), None)
    assert (plan.setup, plan.checks, plan.setup_source, plan.checks_source) == (
        (),
        (),
        "none",
        "none",
    )


@pytest.mark.parametrize("config", [None, "checks: [tox]\n", "checks: []\n"])
@pytest.mark.parametrize("docs", [(), (ROOT_DOC,), (WEB_DOC,), DOCS])
def test_the_diff_is_needed_only_when_changed_files_can_pick_other_checks(
    config: str | None, docs: tuple[AgentsDoc, ...]
) -> None:
    checkout = Checkout(parse_repo_config(config), docs)
    changes: tuple[list[str], ...] = ([], ["README.md"], ["web/a.ts"], ["web/a.ts", "lib/b.py"])
    picked = {checkout.plan(changed).checks for changed in changes}
    if not checkout.checks_follow_changes():
        assert len(picked) == 1
    assert checkout.checks_follow_changes() == (config is None and WEB_DOC in docs)
    assert not checkout.checks_follow_changes() or len(picked) > 1


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_find_agents_files_skips_dependency_trees(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "AGENTS.md": "",
            "pkg/AGENTS.md": "",
            "pkg/deep/er/AGENTS.md": "",
            "node_modules/lib/AGENTS.md": "",
            ".git/AGENTS.md": "",
            ".venv/lib/AGENTS.md": "",
            "docs/agents.md": "",
        },
    )
    os.symlink(tmp_path / "AGENTS.md", tmp_path / "docs" / "AGENTS.md")
    assert find_agents_files(tmp_path) == ["AGENTS.md", "pkg/AGENTS.md", "pkg/deep/er/AGENTS.md"]


def test_read_checkout(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".github/gantry.yml": "checks: [make ci]\n",
            "AGENTS.md": "# Setup\n```bash\nmake\n```\n",
        },
    )
    checkout = read_checkout(tmp_path)
    assert [d.path for d in checkout.docs] == ["AGENTS.md"]
    plan = checkout.plan()
    assert [c.text for c in plan.setup] == ["make"]
    assert [str(c.origin) for c in plan.checks] == [".github/gantry.yml:1"]


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "gantry.yml").write_bytes(b'image: a\nenv: {X: "\xff"}\n')
    with pytest.raises(ConfigError) as info:
        read_config_text(tmp_path)
    assert [str(p) for p in info.value.problems] == ["not UTF-8 text (line 2)"]
    assert read_config_text(tmp_path / "nothing-here") is None
