"""Every AGENTS.md tree of the corpus parses to exactly the commands its expected.txt lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.agents_md import AgentsDoc, parse_agents_md

CORPUS = Path(__file__).parent / "corpus" / "agents"


def _cases() -> list[Any]:
    return [pytest.param(path, id=path.name) for path in sorted(CORPUS.iterdir())]


def _render(doc: AgentsDoc) -> list[str]:
    """One line per command, ignored block or skipped list item, in file order."""
    rows: list[tuple[int, str]] = []
    for kind, commands in (("setup", doc.setup), ("checks", doc.checks)):
        rows += [
            (c.origin.line, f"{kind} | {c.origin} | {c.cwd or '.'} | {c.text}") for c in commands
        ]
    rows += [(b.origin.line, f"ignored | {b.origin} | {b.heading or '-'}") for b in doc.ignored]
    rows += [
        (i.origin.line, f"skipped | {i.origin} | {i.judged.command} | {i.judged.reason}")
        for i in doc.items
        if not i.taken
    ]
    return [row for _, row in sorted(rows)]


def test_corpus_is_not_empty() -> None:
    assert len(_cases()) >= 6


@pytest.mark.parametrize("case", _cases())
def test_corpus_tree(case: Path) -> None:
    files = sorted(p.relative_to(case).as_posix() for p in case.rglob("AGENTS.md"))
    docs = [parse_agents_md((case / f).read_text(encoding="utf-8"), f) for f in files]
    got = [row for doc in docs for row in _render(doc)]
    expected = (case / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert got == expected
