"""Language pinning and extra CA certificates: the pure parts, the cache key, `validate`."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from config.loader import CommandPlan
from config.repo_config import parse_repo_config
from gantry import validate
from runner.auto_install import detect_installs
from runner.ca_certs import EXTRA_FILE, ExtraCa, ExtraCaError, load_extra_ca
from runner.cache import CacheInputs, cache_key
from runner.environment import from_config
from runner.languages import describe, select_argv, selection_error

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_selection_is_one_sorted_gantry_select_call() -> None:
    assert select_argv({"python": "3.11", "node": "20"}) == [
        "gantry-select",
        "node=20",
        "python=3.11",
    ]
    assert describe({}) == "image defaults"


def test_an_absent_version_is_reported_with_what_the_image_has() -> None:
    output = "gantry-select: node 16 is not in this image; it has: 20.20.2, 22.23.3\n"
    reason = selection_error("img", {"node": "16"}, 3, output)
    assert reason == "languages: node 16 is not in this image; it has: 20.20.2, 22.23.3 (image img)"


def test_an_image_without_gantry_select_is_named() -> None:
    reason = selection_error("alpine:3", {"node": "20"}, 127, "exec failed")
    assert "alpine:3 has no gantry-select" in reason


def inputs(**changes: object) -> CacheInputs:
    values: dict[str, object] = {
        "repo": "acme/widget",
        "base_image_id": "sha256:base",
        "setup": ("npm ci",),
        "maintenance": (),
    }
    return CacheInputs(**(values | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"languages": {"node": "20"}}, {"extra_ca_digest": "abc"}],
    ids=["languages", "extra-ca"],
)
def test_the_selection_and_the_ca_bundle_are_part_of_the_cache_key(
    change: dict[str, object],
) -> None:
    assert cache_key(inputs(**change)) != cache_key(inputs())
    assert cache_key(inputs(**change)) == cache_key(inputs(**change))


def test_node_20_and_node_22_are_different_environments() -> None:
    assert cache_key(inputs(languages={"node": "20"})) != cache_key(
        inputs(languages={"node": "22"})
    )


def test_the_request_carries_languages_and_what_auto_install_detected() -> None:
    parsed = parse_repo_config('languages: {node: "20"}\n')
    detection = detect_installs(["package-lock.json"])
    plan = CommandPlan((), (), (), "auto", "none", detection)
    request = from_config(
        parsed.config, plan, (), task_id="t", repo="a/b", clone_url="u", sha="s", token=None
    )
    assert request.languages == {"node": "20"}
    assert request.setup_notes == ("detected: npm ci (package-lock.json)",)


def test_extra_ca_loads_a_pem_bundle_and_names_the_tool_variables(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(PEM.rstrip())
    extra = load_extra_ca(path)
    assert extra.pem.endswith(b"\n")
    assert set(extra.env()) == {
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "PIP_CERT",
        "NODE_EXTRA_CA_CERTS",
    }
    assert extra.env()["NODE_EXTRA_CA_CERTS"] == EXTRA_FILE
    with tarfile.open(fileobj=io.BytesIO(extra.archive())) as tar:
        member = tar.extractfile(EXTRA_FILE.strip("/"))
        assert member is not None
        assert member.read() == extra.pem
    assert extra.digest in extra.install_script()


def test_extra_ca_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_text("hello\n")
    with pytest.raises(ExtraCaError, match="holds no PEM certificate"):
        load_extra_ca(tmp_path / "x.pem")
    with pytest.raises(ExtraCaError, match="cannot read"):
        load_extra_ca(tmp_path / "missing.pem")


def test_the_digest_follows_the_content() -> None:
    assert ExtraCa(PEM).digest != ExtraCa(PEM + PEM).digest


def test_validate_shows_the_selection_and_the_detection(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github/gantry.yml").write_text('languages:\n  python: "3.11"\n  node: "20"\n')
    (tmp_path / "package-lock.json").write_text("{}\n")
    (tmp_path / "yarn.lock").write_text("\n")
    out = io.StringIO()
    assert validate.run(tmp_path, None, out) == 0
    text = out.getvalue()
    assert "Languages: node 20, python 3.11" in text
    assert "selected before setup with: gantry-select node=20 python=3.11" in text
    assert "Setup (auto_install, from the lockfiles found):" in text
    assert "yarn.lock:1\n      yarn install --frozen-lockfile" in text
    assert "auto_install: ignored: package-lock.json (the root uses yarn)" in text


def test_validate_says_when_auto_install_is_off(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github/gantry.yml").write_text("auto_install: false\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    out = io.StringIO()
    assert validate.run(tmp_path, None, out) == 0
    assert "Setup (none): none\n  auto_install: off" in out.getvalue()
