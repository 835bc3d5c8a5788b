"""Automatic install: the detection table, its precedence, and how the plan uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.agents_md import parse_agents_md
from config.loader import list_files, plan_commands, tree_files
from config.repo_config import parse_repo_config
from runner.auto_install import Detection, detect_installs

NPM_WORKSPACES = json.dumps({"name": "mono", "workspaces": ["packages/*"]})
YARN_WORKSPACES = json.dumps({"workspaces": {"packages": ["apps/*"]}})
PNPM_WORKSPACE = "packages:\n  - 'libs/*'\n  - \"!libs/skip\"\n"

TABLE: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    ("none", ["README.md", "src/main.c"], {}, []),
    ("npm", ["package.json", "package-lock.json"], {}, ["npm ci"]),
    ("yarn 1", ["package.json", "yarn.lock"], {}, ["yarn install --frozen-lockfile"]),
    ("yarn berry", ["package.json", "yarn.lock", ".yarnrc.yml"], {}, ["yarn install --immutable"]),
    ("pnpm", ["package.json", "pnpm-lock.yaml"], {}, ["pnpm install --frozen-lockfile"]),
    ("poetry", ["pyproject.toml", "poetry.lock"], {}, ["poetry install"]),
    ("pipenv", ["Pipfile", "Pipfile.lock"], {}, ["pipenv install --deploy"]),
    ("requirements", ["requirements.txt"], {}, ["pip install -r requirements.txt"]),
    (
        "several requirements, plain first",
        ["requirements-dev.txt", "requirements.txt", "requirements_test.txt"],
        {},
        ["pip install -r requirements.txt -r requirements-dev.txt -r requirements_test.txt"],
    ),
    ("pyproject without a lock", ["pyproject.toml"], {}, ["pip install -e ."]),
    (
        "pyproject holding only tool settings",
        ["pyproject.toml"],
        {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"},
        [],
    ),
    (
        "pyproject declaring a project",
        ["pyproject.toml"],
        {"pyproject.toml": '[project]\nname = "x"\n'},
        ["pip install -e ."],
    ),
    (
        "mixed Python and Node",
        ["package.json", "package-lock.json", "requirements.txt", "pyproject.toml"],
        {},
        ["npm ci", "pip install -r requirements.txt"],
    ),
    (
        "pnpm over yarn over npm",
        ["pnpm-lock.yaml", "yarn.lock", "package-lock.json"],
        {},
        ["pnpm install --frozen-lockfile"],
    ),
    ("yarn over npm", ["yarn.lock", "package-lock.json"], {}, ["yarn install --frozen-lockfile"]),
    (
        "packageManager decides",
        ["package.json", "yarn.lock", "package-lock.json"],
        {"package.json": json.dumps({"packageManager": "npm@10.9.2"})},
        ["npm ci"],
    ),
    (
        "poetry over requirements",
        ["poetry.lock", "requirements.txt", "pyproject.toml"],
        {},
        ["poetry install"],
    ),
    (
        "pipenv over requirements",
        ["Pipfile.lock", "requirements.txt"],
        {},
        ["pipenv install --deploy"],
    ),
    (
        "requirements over pyproject",
        ["requirements.txt", "pyproject.toml"],
        {},
        ["pip install -r requirements.txt"],
    ),
    ("lockfiles below the root do not count", ["web/package-lock.json", "api/poetry.lock"], {}, []),
    ("dependency trees do not count", ["node_modules/x/requirements.txt"], {}, []),
]


@pytest.mark.parametrize(
    ("files", "manifests", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_detection_table(files: list[str], manifests: dict[str, str], expected: list[str]) -> None:
    assert [i.command for i in detect_installs(files, manifests).installs] == expected


def test_the_ignored_lockfiles_are_named_with_the_reason() -> None:
    detection = detect_installs(
        ["yarn.lock", "package-lock.json", "poetry.lock", "requirements.txt"]
    )
    assert detection.ignored == (
        "package-lock.json (the root uses yarn)",
        "requirements.txt (the root uses poetry.lock)",
    )
    assert detection.lines()[:2] == [
        "detected: yarn install --frozen-lockfile (yarn.lock)",
        "detected: poetry install (poetry.lock)",
    ]


def test_npm_workspaces_install_once_from_the_root() -> None:
    files = [
        "package.json",
        "package-lock.json",
        "packages/a/package.json",
        "packages/a/package-lock.json",
        "packages/b/package.json",
        "tools/c/package.json",
    ]
    detection = detect_installs(files, {"package.json": NPM_WORKSPACES})
    assert [i.command for i in detection.installs] == ["npm ci"]
    assert detection.workspaces == ("packages/a", "packages/b")
    assert detection.ignored == (
        "packages/a/package-lock.json (a workspace member; the root install covers it)",
    )


def test_yarn_workspaces_in_the_object_form() -> None:
    files = ["package.json", "yarn.lock", ".yarnrc.yml", "apps/web/package.json"]
    detection = detect_installs(files, {"package.json": YARN_WORKSPACES})
    assert [i.command for i in detection.installs] == ["yarn install --immutable"]
    assert detection.workspaces == ("apps/web",)


def test_pnpm_workspaces_from_pnpm_workspace_yaml() -> None:
    files = ["package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml"]
    files += ["libs/one/package.json", "libs/skip/package.json"]
    detection = detect_installs(files, {"pnpm-workspace.yaml": PNPM_WORKSPACE})
    assert [i.command for i in detection.installs] == ["pnpm install --frozen-lockfile"]
    assert "libs/one" in detection.workspaces
    assert any("workspaces installed from the root: libs/one" in line for line in detection.lines())


def test_an_unreadable_package_json_falls_back_to_the_lockfile_order() -> None:
    detection = detect_installs(["yarn.lock", "package-lock.json"], {"package.json": "{not json"})
    assert [i.command for i in detection.installs] == ["yarn install --frozen-lockfile"]


def test_nothing_found_says_so() -> None:
    assert detect_installs([]).lines() == [
        "no lockfile or Python project found at the repository root"
    ]


FILES = ["package.json", "package-lock.json", "requirements.txt"]


def test_the_plan_uses_auto_install_when_nothing_else_gives_setup() -> None:
    plan = plan_commands(parse_repo_config(None), (), None, FILES)
    assert plan.setup_source == "auto"
    assert [(c.text, str(c.origin)) for c in plan.setup] == [
        ("npm ci", "package-lock.json:1"),
        ("pip install -r requirements.txt", "requirements.txt:1"),
    ]
    assert isinstance(plan.detection, Detection)


def test_config_setup_and_agents_md_setup_win_over_auto_install() -> None:
    from_config = plan_commands(parse_repo_config("setup: make deps\n"), (), None, FILES)
    assert (from_config.setup_source, from_config.detection) == ("config", None)
    doc = parse_agents_md("## Setup\n\n```sh\nmake deps\n```\n", "AGENTS.md")
    from_docs = plan_commands(parse_repo_config(None), (doc,), None, FILES)
    assert (from_docs.setup_source, from_docs.detection) == ("AGENTS.md", None)


def test_auto_install_false_turns_it_off() -> None:
    plan = plan_commands(parse_repo_config("auto_install: false\n"), (), None, FILES)
    assert (plan.setup, plan.setup_source, plan.detection) == ((), "none", None)


def test_without_a_file_list_there_is_no_auto_install() -> None:
    plan = plan_commands(parse_repo_config(None), (), None)
    assert (plan.setup, plan.setup_source) == ((), "none")


def test_nothing_detected_leaves_setup_empty_with_the_detection_shown() -> None:
    plan = plan_commands(parse_repo_config(None), (), None, ["README.md"])
    assert (plan.setup, plan.setup_source) == ((), "none")
    assert plan.detection is not None
    assert not plan.detection.installs


def test_a_checkout_and_a_github_tree_list_the_same_files(tmp_path: Path) -> None:
    for name in ("package-lock.json", "web/yarn.lock", "node_modules/x/package.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    tree = [
        {"path": "package-lock.json", "type": "blob"},
        {"path": "web", "type": "tree"},
        {"path": "web/yarn.lock", "type": "blob"},
        {"path": "node_modules/x/package.json", "type": "blob"},
    ]
    assert list_files(tmp_path) == tree_files(tree) == ("package-lock.json", "web/yarn.lock")
