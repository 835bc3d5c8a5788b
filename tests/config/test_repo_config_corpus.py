"""Every file of the gantry.yml corpus parses to exactly the values or problems it declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config.repo_config import ConfigError, load_repo_config

CORPUS = Path(__file__).parent / "corpus" / "config"
EXPECT = "# expect: "
VALUE = "# value: "


def _cases() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in sorted(CORPUS.glob("*.yml"))]


def _declared(text: str, prefix: str) -> list[str]:
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def test_corpus_is_not_empty() -> None:
    assert len(_cases()) >= 30


@pytest.mark.parametrize("path", _cases())
def test_corpus_file(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = _declared(text, EXPECT)
    values = _declared(text, VALUE)
    assert expected or values, f"{path.name} declares nothing to check"
    if expected:
        with pytest.raises(ConfigError) as info:
            load_repo_config(text)
        assert [str(p) for p in info.value.problems] == expected
        return
    dumped = load_repo_config(text).model_dump(mode="json")
    for value in values:
        key, _, want = value.partition(" = ")
        assert _lookup(dumped, key) == json.loads(want), key
