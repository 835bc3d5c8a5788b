"""AGENTS.md rules one at a time: headings, shell blocks, nesting."""

from __future__ import annotations

import pytest

from config.agents_md import (
    AgentsDoc,
    Command,
    Origin,
    checks_for_changes,
    classify_heading,
    nearest_doc,
    parse_agents_md,
    setup_from_docs,
    shell_commands,
)


@pytest.mark.parametrize(
    ("heading", "kind"),
    [
        ("Setup", "setup"),
        ("Set up your machine", "setup"),
        ("Installation", "setup"),
        ("Getting Started", "setup"),
        ("Development environment", "setup"),
        ("Dev environment tips", "setup"),
        ("Tests", "checks"),
        ("Running the test suite", "checks"),
        ("Linting", "checks"),
        ("Validation", "checks"),
        ("CI", "checks"),
        ("Checks", "checks"),
        ("Type checking", "checks"),
        ("Install, then test", "setup"),
        ("Testing the installer", "checks"),
        ("Deployment", None),
        ("Contest rules", None),
        ("Citations", None),
        ("Architecture", None),
    ],
)
def test_classify_heading(heading: str, kind: str | None) -> None:
    assert classify_heading(heading) == kind


@pytest.mark.parametrize(
    ("content", "console", "expected"),
    [
        ("make test\n", False, [(0, "make test")]),
        ("$ make test\n", False, [(0, "make test")]),
        ("$ make\noutput\n", False, [(0, "make"), (1, "output")]),
        ("$ make\noutput\n$ make check\n", True, [(0, "make"), (2, "make check")]),
        ("# comment\n\n  pytest -q\n", False, [(2, "pytest -q")]),
        ("pip install \\\n  -e .\n", False, [(0, "pip install -e .")]),
        ("$ a \\\n> b\n", True, [(0, "a b")]),
        ("echo \\\\\nls\n", False, [(0, "echo \\\\"), (1, "ls")]),
        ("$\n", True, []),
        ("", False, []),
    ],
)
def test_shell_commands(content: str, console: bool, expected: list[tuple[int, str]]) -> None:
    assert shell_commands(content, console=console) == expected


def test_only_shell_languages_count() -> None:
    text = "## Tests\n\n```python\nx\n```\n\n```\nbare\n```\n\n```js\ny\n```\n\n```sh\nz\n```\n"
    doc = parse_agents_md(text)
    assert [c.text for c in doc.checks] == ["z"]
    assert doc.ignored == ()


def test_inline_code_in_prose_is_ignored() -> None:
    doc = parse_agents_md("## Testing\n\nRun `pytest -q` and `make lint` locally.\n")
    assert doc.checks == ()
    assert doc.setup == ()


def test_commands_keep_file_line_and_directory() -> None:
    doc = parse_agents_md("# Tests\n\n```bash\n\nnpm test\n```\n", "web/app/AGENTS.md")
    assert doc.checks == (Command("npm test", Origin("web/app/AGENTS.md", 5), "web/app"),)
    assert str(doc.checks[0].origin) == "web/app/AGENTS.md:5"


def test_a_lower_heading_without_keywords_inherits() -> None:
    text = "## Testing\n\n### Unit\n\n```sh\nmake unit\n```\n\n## Release\n\n```sh\nmake rel\n```\n"
    doc = parse_agents_md(text)
    assert [c.text for c in doc.checks] == ["make unit"]
    assert [b.heading for b in doc.ignored] == ["Release"]


def _doc(path: str, check: str) -> AgentsDoc:
    directory = path.rpartition("/")[0]
    return AgentsDoc(path, checks=(Command(check, Origin(path, 1), directory),))


DOCS = [_doc("AGENTS.md", "root"), _doc("web/AGENTS.md", "web"), _doc("web/ui/AGENTS.md", "ui")]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (None, ["root"]),
        ([], ["root"]),
        (["README.md"], ["root"]),
        (["web/index.ts"], ["web"]),
        (["web/ui/button.tsx", "web/ui/x.css"], ["ui"]),
        (["webby/x.py"], ["root"]),
        (["web/ui/a.tsx", "README.md", "web/b.ts"], ["root", "web", "ui"]),
    ],
)
def test_checks_of_the_nearest_agents_md(changed: list[str] | None, expected: list[str]) -> None:
    assert [c.text for c in checks_for_changes(DOCS, changed)] == expected


def test_no_root_file_means_no_checks_outside_subtrees() -> None:
    docs = DOCS[1:]
    assert checks_for_changes(docs, ["README.md"]) == ()
    assert checks_for_changes(docs, None) == ()
    assert nearest_doc(docs, "web/ui/x") == docs[1]


def test_setup_runs_root_first_then_subtrees_in_their_directories() -> None:
    docs = [
        parse_agents_md("# Setup\n```sh\nb\n```\n", "b/AGENTS.md"),
        parse_agents_md("# Setup\n```sh\nroot\n```\n", "AGENTS.md"),
        parse_agents_md("# Setup\n```sh\na\n```\n", "a/x/AGENTS.md"),
    ]
    assert [(c.text, c.cwd) for c in setup_from_docs(docs)] == [
        ("root", ""),
        ("b", "b"),
        ("a", "a/x"),
    ]


def test_sections_about_review_are_the_review_rules() -> None:
    text = (
        "# Agents\n\n## Code review\n\nFlag any `eval`.\n\n### Tests in reviews\n\nAsk for one.\n\n"
        "## Testing\n\n```sh\npytest\n```\n\n## Reviewers\nBe kind.\n"
    )
    doc = parse_agents_md(text)
    assert doc.review_rules == (
        "## Code review\n\nFlag any `eval`.\n\n### Tests in reviews\n\nAsk for one.",
        "## Reviewers\nBe kind.",
    )
    assert [c.text for c in doc.checks] == ["pytest"]
    assert parse_agents_md("# Preview builds\n\nnot a review rule\n").review_rules == ()
