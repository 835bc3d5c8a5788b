"""`gantry doctor`: each check passes on a healthy setup and says how to fix a broken one."""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest

from config.errors import SettingsError
from config.settings import Settings, load_settings
from forge.auth import generate_key_pair
from forge.server import Forge
from gantry import doctor
from gantry.cli import main
from runner import migrate
from runner.disk_limit import DiskLimitSupport, detect
from runner.store import InboxState, SQLiteTaskStore
from tests.support import TEST_BASE_IMAGE

SECRET = "doctor-secret"


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(github_webhook_secret=SECRET, data_dir=tmp_path / "data", **values)  # type: ignore[arg-type]


def test_data_dir_is_created_and_writable(tmp_path: Path) -> None:
    result = doctor.check_data_dir(tmp_path / "new" / "dir")
    assert result.status == doctor.OK_MARK
    assert (tmp_path / "new" / "dir").is_dir()


def test_data_dir_under_a_file_fails_with_a_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = doctor.check_data_dir(blocker / "data")
    assert result.failed
    assert "is not writable" in result.detail
    assert "GANTRY_DATA_DIR" in result.fix


def test_sqlite_database_opens(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.data_dir.mkdir()
    result = doctor.check_database(settings)
    assert result.status == doctor.OK_MARK
    assert str(settings.data_dir / "gantry.db") in result.detail


async def test_the_inbox_check_counts_failed_deliveries(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert doctor.check_inbox(settings).status == doctor.SKIP_MARK
    store = await SQLiteTaskStore.open(settings.data_dir / "gantry.db")
    try:
        assert doctor.check_inbox(settings).status == doctor.OK_MARK
        for name in ("d1", "d2"):
            await store.accept_delivery(name, "issue_comment", "{}")
        await store.settle_delivery(
            "d1", InboxState.FAILED, attempts=11, outcome="failed", reason="GitHub failed"
        )
    finally:
        await store.close()
    result = doctor.check_inbox(settings)
    assert (result.status, result.detail) == (doctor.WARN_MARK, "1 failed, 1 pending deliveries")
    assert "redeliver" in result.fix


def test_an_unknown_database_scheme_is_refused_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sqlite:/// or postgresql://"):
        settings_for(tmp_path, database_url="mysql://db/gantry")


def test_postgresql_answers_with_its_version_and_schema(postgres_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=postgres_url)
    before = doctor.check_database(settings)
    assert before.status == doctor.OK_MARK
    assert before.detail.startswith("PostgreSQL ")
    assert "schema at none" in before.detail
    migrate.upgrade(settings.database)
    after = doctor.check_database(settings)
    assert f"schema at {migrate.head()} (newest)" in after.detail
    assert "postgres@" not in after.detail  # no user (or password) in the report
    assert doctor.check_inbox(settings).detail == "0 failed, 0 pending deliveries"


def test_unreachable_postgresql_fails_with_a_fix(tmp_path: Path) -> None:
    url = "postgresql://gantry:hunter2@127.0.0.1:1/gantry"
    result = doctor.check_database(settings_for(tmp_path, database_url=url))
    assert result.failed
    assert "cannot reach PostgreSQL" in result.detail
    assert "hunter2" not in result.detail
    assert "GANTRY_DATABASE_URL" in result.fix


def test_unreachable_docker_fails_with_a_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    result = doctor.check_docker()
    assert result.failed
    assert "no Docker engine answers" in result.detail
    assert "dockerd" in result.fix


def test_reachable_docker_reports_its_version(docker_client: docker.DockerClient) -> None:
    result = doctor.check_docker()
    assert result.status == doctor.OK_MARK
    assert docker_client.version()["Version"] in result.detail


async def test_github_is_skipped_without_credentials(tmp_path: Path) -> None:
    result = await doctor.check_github(settings_for(tmp_path))
    assert result.status == doctor.SKIP_MARK


async def test_unreachable_github_fails_with_a_fix(tmp_path: Path) -> None:
    from tests.test_settings import rsa_pem

    settings = settings_for(
        tmp_path,
        github_app_id=1,
        github_private_key=rsa_pem(),
        github_api_url="http://127.0.0.1:9/",
    )
    result = await doctor.check_github(settings)
    assert result.failed
    assert "cannot reach http://127.0.0.1:9" in result.detail
    assert "GANTRY_GITHUB_API_URL" in result.fix


async def test_invalid_settings_skip_what_depends_on_them() -> None:
    results = await doctor.run_checks(SettingsError(["GANTRY_X: broken"]))
    by_name = {r.name: r for r in results}
    assert by_name["settings"].failed
    assert by_name["settings"].detail == "GANTRY_X: broken"
    assert {by_name[n].status for n in ("data dir", "database", "github")} == {doctor.SKIP_MARK}
    assert "disk limit" in by_name


def test_render_lists_each_check_and_its_fix() -> None:
    text = doctor.render(
        [doctor.passed("docker", "engine 1"), doctor.failed("data dir", "nope", "mkdir it")]
    )
    assert "[  ok] docker    engine 1" in text
    assert "[FAIL] data dir  nope" in text
    assert "fix: mkdir it" in text
    assert text.endswith("1 check(s) failed")


def test_cli_doctor_without_settings_exits_1_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor"]) == 1
    out, err = capsys.readouterr()
    assert "GANTRY_GITHUB_WEBHOOK_SECRET: is required to serve but not set" in out
    assert "Traceback" not in out + err


async def test_cli_doctor_passes_on_a_healthy_host(
    docker_client: docker.DockerClient,
    forge: Forge,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    creds = forge.register_app("gantry")
    key = tmp_path / "app.pem"
    key.write_text(creds.private_key_pem)
    monkeypatch.setenv("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GANTRY_GITHUB_APP_ID", str(creds.app_id))
    monkeypatch.setenv("GANTRY_GITHUB_PRIVATE_KEY_PATH", str(key))
    monkeypatch.setenv("GANTRY_GITHUB_API_URL", forge.api_url)
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GANTRY_DEFAULT_IMAGE", TEST_BASE_IMAGE)
    results = await doctor.run_checks(load_settings(env_file=None))
    text = doctor.render(results)
    assert "all checks passed" in text.splitlines()[-1], text
    assert "authenticated as App 'gantry'" in text


def test_cli_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "worker", "run", "config", "doctor"):
        assert f"    {command} " in out
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--no-workers" in capsys.readouterr().out


def test_an_unenforced_disk_limit_warns_with_what_to_configure() -> None:
    result = doctor.disk_limit_result(DiskLimitSupport(False, "overlay2 on extfs: sizes need xfs"))
    assert result.status == doctor.WARN_MARK
    assert not result.failed
    assert "NOT enforced: overlay2 on extfs" in result.detail
    assert "xfs mounted with pquota" in result.fix
    assert "docs/operating.md#disk-limit" in result.fix
    text = doctor.render([doctor.passed("docker", "engine 1"), result])
    assert "[warn] disk limit" in text
    assert text.endswith("all checks passed (1 warning(s))")
    enforced = doctor.disk_limit_result(DiskLimitSupport(True, "btrfs enforces sizes", True))
    assert enforced.status == doctor.OK_MARK
    assert "image's own size" in enforced.detail


def test_the_disk_limit_check_asks_the_real_engine(docker_client: docker.DockerClient) -> None:
    result = doctor.check_disk_limit(TEST_BASE_IMAGE)
    expected = detect(docker_client, TEST_BASE_IMAGE)
    assert result == doctor.disk_limit_result(expected)
    leftovers = docker_client.containers.list(all=True, filters={"label": "gantry.kind"})
    assert not [c for c in leftovers if c.labels.get("gantry.kind") == "disk-probe"]


def test_the_disk_limit_check_is_skipped_without_an_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    result = doctor.check_disk_limit(TEST_BASE_IMAGE)
    assert result.status == doctor.SKIP_MARK
    assert "cannot ask the engine" in result.detail


def test_a_dotenv_that_is_not_utf8_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Path(".env").write_bytes("GANTRY_PUBLIC_URL=https://caf\xe9.example\n".encode("latin-1"))
    assert main(["serve"]) == 2
    assert main(["doctor"]) == 1
    out, err = capsys.readouterr()
    assert ".env: not UTF-8 text (byte 30)" in err  # serve
    assert ".env: not UTF-8 text (byte 30)" in out  # doctor
    assert "Traceback" not in out + err


def serving_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings `gantry serve` takes, with a GitHub that does not answer."""
    monkeypatch.setenv("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GANTRY_GITHUB_APP_ID", "1")
    monkeypatch.setenv("GANTRY_GITHUB_PRIVATE_KEY", generate_key_pair().private_pem)
    monkeypatch.setenv("GANTRY_GITHUB_API_URL", "http://127.0.0.1:9/api/v3")
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path))


def test_serve_on_a_port_in_use_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serving_env(monkeypatch, tmp_path)
    monkeypatch.setenv("GANTRY_BOT_HANDLE", "gantry")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--no-workers", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"gantry serve: cannot listen on 127.0.0.1:{port}: " in err
    assert "Traceback" not in err


def test_serve_when_github_does_not_answer_says_what_to_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serving_env(monkeypatch, tmp_path)
    assert main(["serve", "--no-workers", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "GitHub did not tell the App's handle (GET http://127.0.0.1:9/api/v3/app)" in err
    assert "set GANTRY_BOT_HANDLE to start without asking" in err
    assert "Traceback" not in err


def test_unconfined_ptrace_warns_that_every_phase_restarts() -> None:
    result = doctor.ptrace_result(None)
    assert result.status == doctor.WARN_MARK
    assert "every phase ends with a container restart (about 0.5 s)" in result.detail
    assert result.fix == (
        "set kernel.yama.ptrace_scope=1 on the engine's host to let Gantry skip it safely"
    )
    assert doctor.ptrace_result(0).status == doctor.WARN_MARK
    assert doctor.ptrace_result(1).status == doctor.OK_MARK
    assert doctor.ptrace_result(3).status == doctor.OK_MARK
    # An engine of another machine than x86-64 keeps docker-init and the image's `sleep`.
    assert doctor.ptrace_result(None, "aarch64").status == doctor.WARN_MARK


def test_an_x86_64_engine_needs_no_confined_ptrace() -> None:
    result = doctor.ptrace_result(None, "x86_64")
    assert result.status == doctor.OK_MARK
    assert "Gantry's undumpable idle" in result.detail


def test_the_ptrace_check_reads_the_engines_kernel(docker_client: docker.DockerClient) -> None:
    path = Path("/proc/sys/kernel/yama/ptrace_scope")  # the test engine runs on this host
    scope = int(path.read_text()) if path.exists() else None
    architecture = str(docker_client.info()["Architecture"])
    assert doctor.check_ptrace() == doctor.ptrace_result(scope, architecture)
