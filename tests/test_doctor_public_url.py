"""`gantry doctor` warns when task links cannot be made (no `PUBLIC_URL`) or are not private."""

from __future__ import annotations

from pathlib import Path

import docker

from config.settings import Settings
from gantry import doctor


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(github_webhook_secret="s", data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_no_public_url_is_a_warning_with_its_fix(tmp_path: Path) -> None:
    result = doctor.check_public_url(settings_for(tmp_path))
    assert result.status == doctor.WARN_MARK
    assert not result.failed
    assert "GANTRY_PUBLIC_URL is not set" in result.detail
    assert "set GANTRY_PUBLIC_URL" in result.fix
    assert "[warn] public url" in doctor.render([result])


def test_an_https_public_url_passes(tmp_path: Path) -> None:
    result = doctor.check_public_url(settings_for(tmp_path, public_url="https://gantry.example/g/"))
    assert result.status == doctor.OK_MARK
    assert "https://gantry.example/g/" in result.detail


def test_plain_http_warns_except_on_this_machine(tmp_path: Path) -> None:
    remote = doctor.check_public_url(settings_for(tmp_path, public_url="http://gantry.example"))
    assert remote.status == doctor.WARN_MARK
    assert "not https" in remote.detail
    local = doctor.check_public_url(settings_for(tmp_path, public_url="http://127.0.0.1:8080"))
    assert local.status == doctor.OK_MARK


async def test_run_checks_includes_the_public_url_warning(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    results = await doctor.run_checks(settings_for(tmp_path))
    [check] = [r for r in results if r.name == "public url"]
    assert check.status == doctor.WARN_MARK
