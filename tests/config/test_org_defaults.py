"""The organisation's defaults merged under a repository's file, and who set each value."""

from __future__ import annotations

import copy

from config.org_defaults import merge_layers, org_repo, org_source

ORG = {
    "image": "ghcr.io/acme/dev:1",
    "env": {"A": "org", "B": "org"},
    "network": {"agent": "limited", "allow": ["pypi.org", "files.pythonhosted.org"]},
    "agent": {"preset": "codex", "model": "gpt-5-codex"},
    "resources": {"memory": "8g", "cpus": 4},
}
REPO = {
    "env": {"B": "repo"},
    "network": {"allow": ["registry.npmjs.org"]},
    "agent": {"command": "./run-agent"},
    "resources": {"cpus": 1},
}


def test_mappings_merge_key_by_key_and_lists_replace() -> None:
    merged, _ = merge_layers([ORG, REPO])
    assert merged["image"] == "ghcr.io/acme/dev:1"
    assert merged["env"] == {"A": "org", "B": "repo"}
    assert merged["network"] == {"agent": "limited", "allow": ["registry.npmjs.org"]}
    assert merged["resources"] == {"memory": "8g", "cpus": 1}


def test_origins_name_the_layer_that_set_each_value() -> None:
    _, origins = merge_layers([ORG, REPO])
    assert origins[("image",)] == 0
    assert origins[("env", "A")] == 0
    assert origins[("env", "B")] == 1
    assert origins[("network", "allow")] == 1
    assert origins[("network", "agent")] == 0
    assert origins[("resources", "cpus")] == 1
    assert ("env",) not in origins  # a merged mapping belongs to no single layer


def test_a_repository_command_agent_drops_the_organisations_preset_and_model() -> None:
    merged, origins = merge_layers([ORG, REPO])
    assert merged["agent"] == {"command": "./run-agent"}
    assert ("agent", "preset") not in origins
    assert ("agent", "model") not in origins
    merged, _ = merge_layers([{"agent": {"command": "x"}}, {"agent": {"preset": "claude"}}])
    assert merged["agent"] == {"preset": "claude"}


def test_a_scalar_replaces_a_mapping_and_a_mapping_replaces_a_scalar() -> None:
    merged, origins = merge_layers([{"checks": {"x": 1}}, {"checks": "pytest"}])
    assert merged == {"checks": "pytest"}
    assert origins == {("checks",): 1}
    merged, origins = merge_layers([{"triggers": "x"}, {"triggers": {"label": "bot"}}])
    assert merged == {"triggers": {"label": "bot"}}
    assert origins == {("triggers", "label"): 1}


def test_merging_leaves_every_layer_as_it_was() -> None:
    before = copy.deepcopy((ORG, REPO))
    merged, _ = merge_layers([ORG, REPO])
    merged["env"]["A"] = "changed"
    merged["network"]["allow"].append("x")
    assert before == (ORG, REPO)


def test_the_org_repository_is_the_owners_dot_github() -> None:
    assert org_repo("acme/api") == "acme/.github"
    assert org_repo("acme/.github") is None
    assert org_source("acme/.github") == "acme/.github:.github/gantry.yml"
