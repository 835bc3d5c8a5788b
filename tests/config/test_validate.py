"""`gantry config validate`: what it prints, and its exit status."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from config.settings import Settings
from gantry import cli, validate

CONFIG = """\
image: ghcr.io/acme/dev:1
network:
  agent: limited
  allow: [pypi.org]
maintenance: make deps
"""
AGENTS = """\
# Agents

## Setup

```bash
pip install -e .
```

## Deploy

```sh
make deploy
```
"""
WEB_AGENTS = "## Tests\n\n```console\n$ npm test\nok\n```\n"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "gantry.yml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "AGENTS.md").write_text(AGENTS, encoding="utf-8")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "AGENTS.md").write_text(WEB_AGENTS, encoding="utf-8")
    return tmp_path


def _run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    return validate.run(path, None, out), out.getvalue()


def test_valid_checkout_prints_config_and_commands_with_origins(checkout: Path) -> None:
    status, text = _run(checkout)
    assert status == 0
    assert "image: ghcr.io/acme/dev:1" in text
    assert "agent: limited" in text
    assert "ttl: 12h" in text
    assert "AGENTS.md files: AGENTS.md, web/AGENTS.md" in text
    assert "Setup (from AGENTS.md):\n  AGENTS.md:6\n      pip install -e ." in text
    assert "Maintenance:\n  .github/gantry.yml:5\n      make deps" in text
    assert "web/AGENTS.md:4 (in web/)\n      npm test" in text
    assert 'AGENTS.md:11: shell block under "Deploy" ignored' in text
    assert "make deploy" not in text
    assert text.rstrip().endswith("OK")


def test_every_error_is_listed_and_the_status_is_1(checkout: Path) -> None:
    (checkout / ".github" / "gantry.yml").write_text(
        "network:\n  agnet: full\ntimeouts: {setup: 20}\n", encoding="utf-8"
    )
    status, text = _run(checkout)
    assert status == 1
    assert ".github/gantry.yml has 2 problem(s):" in text
    assert ".github/gantry.yml:2: network.agnet: unknown key (did you mean agent?)" in text
    assert ".github/gantry.yml:3: timeouts.setup: write a duration with a unit" in text
    assert "AGENTS.md files: AGENTS.md, web/AGENTS.md" in text


def test_no_config_file_means_defaults(tmp_path: Path) -> None:
    status, text = _run(tmp_path)
    assert status == 0
    assert "no .github/gantry.yml: all defaults" in text
    assert "AGENTS.md files: none" in text
    assert "Setup (none): none" in text
    assert "auto_install" in text


def test_not_a_directory(tmp_path: Path) -> None:
    assert _run(tmp_path / "missing")[0] == 2


def test_parser_adds_config_validate() -> None:
    parser = argparse.ArgumentParser(prog="gantry")
    validate.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["config", "validate"])
    assert (args.command, args.config_command, args.path) == ("config", "validate", Path("."))
    assert parser.parse_args(["config", "validate", "repo"]).path == Path("repo")
    with pytest.raises(SystemExit):
        parser.parse_args(["config"])


def test_list_items_taken_and_skipped_are_listed_with_why(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_text(
        "## Setup commands\n- Install deps: `pnpm install`\n- Start dev server: `pnpm dev`\n"
        "- Run tests: `pnpm test`\n- Scaffold: `pnpm create <project_name>`\n",
        encoding="utf-8",
    )
    status, text = _run(tmp_path)
    assert status == 0
    assert (
        "AGENTS.md:2: list item `pnpm install` taken as setup: labelled as installing or building"
        in text
    )
    assert "AGENTS.md:3: list item `pnpm dev` skipped: a dev server or watcher" in text
    assert "AGENTS.md:4: list item `pnpm test` taken as a check: labelled as testing" in text
    assert "AGENTS.md:5: list item `pnpm create <project_name>` skipped: has a placeholder" in text
    assert "Setup (from AGENTS.md):\n  AGENTS.md:2\n      pnpm install" in text
    assert "Checks (from AGENTS.md):\n  AGENTS.md:4\n      pnpm test\n" in text
    assert "      pnpm dev" not in text


def test_org_defaults_and_ceilings_show_where_each_value_came_from(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "gantry.yml").write_text("resources: {memory: 16g}\n")
    org = tmp_path / "org-gantry.yml"
    org.write_text("image: ghcr.io/acme/dev:1\nresources: {memory: 8g, cpus: 4}\n")
    out = io.StringIO()
    settings = Settings(_env_file=None, max_memory="2g")
    assert validate.run(tmp_path, settings, out, org_file=org) == 0
    text = out.getvalue()
    assert "Where each value comes from:" in text
    lines = {line.split(" = ")[0].strip(): line for line in text.splitlines() if " = " in line}
    assert lines["image"].endswith(f"org ({org}:1)")
    assert lines["resources.cpus"].endswith(f"org ({org}:2)")
    assert "= 2g" in lines["resources.memory"]
    assert lines["resources.memory"].endswith(
        "capped by operator: 16g is above GANTRY_MAX_MEMORY=2g, "
        "asked by repository (.github/gantry.yml:1)"
    )
    assert lines["timeouts.agent"].endswith("default")


def test_a_refused_image_fails_validation_at_its_line(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "gantry.yml").write_text("env: {A: b}\nimage: evil.example/x:1\n")
    out = io.StringIO()
    settings = Settings(_env_file=None, allowed_images="ghcr.io/acme/*")
    assert validate.run(tmp_path, settings, out) == 1
    assert ".github/gantry.yml:2: image: evil.example/x:1 is not allowed by the operator" in (
        out.getvalue()
    )


def test_the_cli_takes_an_org_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = tmp_path / "org.yml"
    org.write_text("timeouts: {agent: 5m}\n")
    command = ["config", "validate", str(tmp_path), "--org-config"]
    assert cli.main([*command, str(org)]) == 0
    assert "timeouts.agent = 5m" in capsys.readouterr().out
    assert cli.main([*command, str(tmp_path / "missing.yml")]) == 1


def test_review_rules_are_shown_with_their_headings(checkout: Path) -> None:
    rules = "\n## Code review\n\nNo eval.\n\n### Reviewing tests\n\nEach bug gets a test.\n"
    (checkout / "AGENTS.md").write_text(AGENTS + rules, encoding="utf-8")
    status, text = _run(checkout)
    assert status == 0
    assert "  AGENTS.md: review rules for `@gantry review`: ## Code review\n" in text


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("env:\n  X: " + "9" * 5000 + "\n", ".github/gantry.yml:2: env.X: a number longer than"),
        ("timeouts:\n  setup: 99999999999999999999h\n", ".github/gantry.yml:2: timeouts.setup:"),
    ],
    ids=["huge-int", "huge-duration"],
)
def test_a_value_too_large_to_read_is_an_error_at_its_line(
    checkout: Path, config: str, error: str
) -> None:
    (checkout / ".github" / "gantry.yml").write_text(config, encoding="utf-8")
    status, text = _run(checkout)
    assert status == 1
    assert ".github/gantry.yml has 1 problem(s):" in text
    assert error in text
