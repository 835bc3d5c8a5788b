"""`gantry doctor`: check what a running Gantry needs and say how to fix what is missing."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import docker
import docker.errors
import gidgethub
import psycopg
import sqlalchemy
from requests.exceptions import RequestException

from bot.github_app import fetch_app
from config.database import Database
from config.errors import SettingsError
from config.settings import DEFAULT_IMAGE, Settings
from runner import idle, migrate, ptrace_scope
from runner.disk_limit import FIX as DISK_FIX
from runner.disk_limit import DiskLimitSupport, DiskProbeError, decide, precheck, probe
from runner.engine import DOCKER_TIMEOUT_S, EngineUnavailableError, docker_version
from runner.image_pull import ImagePuller, ImagePullError, registry_of
from runner.sandbox import SandboxError

OK_MARK = "ok"
FAIL_MARK = "FAIL"
SKIP_MARK = "skip"
WARN_MARK = "warn"
GITHUB_TIMEOUT_S = 15
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
INBOX_COUNTS = "select state, count(*) from inbox group by state"
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error, sqlalchemy.exc.SQLAlchemyError)
IMAGE_FIX = (
    "push the image where the engine can pull it (credentials: GANTRY_REGISTRY_AUTH), build it "
    "on this host (docs/images.md), or point {setting} at one that exists"
)
SETTINGS_FIX = "set the GANTRY_* variables in the environment or in .env (see docs/operating.md)"


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report: what was checked, how it went, how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL_MARK


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, OK_MARK, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, FAIL_MARK, detail, fix)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, SKIP_MARK, detail)


def warned(name: str, detail: str, fix: str) -> CheckResult:
    """Works, but not as safely as it should: said with its fix, not counted as a failure."""
    return CheckResult(name, WARN_MARK, detail, fix)


def check_settings(settings: Settings | SettingsError) -> CheckResult:
    """Settings parse and validate."""
    problems = (
        settings.problems if isinstance(settings, SettingsError) else settings.serving_problems()
    )
    if problems or isinstance(settings, SettingsError):
        return failed("settings", "; ".join(problems), SETTINGS_FIX)
    mode = "loud development mode: tasks run on this host" if settings.executor == "local" else ""
    return passed("settings", f"valid (executor {settings.executor}{', ' + mode if mode else ''})")


def check_docker() -> CheckResult:
    """The Docker engine answers, and which version it is."""
    try:
        version = docker_version()
    except EngineUnavailableError as exc:
        return failed(
            "docker",
            f"no Docker engine answers: {exc}",
            "install and start Docker (Debian: apt-get install docker.io; dockerd), make its "
            "socket readable by this user (docker group), or set DOCKER_HOST",
        )
    return passed(
        "docker", f"engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    )


def disk_limit_result(support: DiskLimitSupport) -> CheckResult:
    """The doctor's line for the engine's disk-limit support."""
    if support.enforced:
        extra = " (the image's own size counts too; Gantry adds it)" if support.counts_image else ""
        return passed("disk limit", f"enforced: {support.detail}{extra}")
    return warned(
        "disk limit",
        f"NOT enforced: {support.detail}; containers run without resources.disk, so a task "
        "can fill the engine's disk",
        DISK_FIX,
    )


def probe_image(client: docker.DockerClient, preferred: str) -> str | None:
    """A local image to probe with: the default image if present, else any tagged one."""
    try:
        client.images.get(preferred)
        return preferred
    except docker.errors.ImageNotFound:
        tags = [tag for image in client.images.list() for tag in image.tags]
        return tags[0] if tags else None


def check_disk_limit(default_image: str) -> CheckResult:
    """The engine enforces containers' disk limits (`resources.disk`)."""
    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        try:
            info = client.info()
            early = precheck(info)
            if early is not None:
                return disk_limit_result(early)
            image = probe_image(client, default_image)
            if image is None:
                return skipped("disk limit", "no local image to probe the engine with")
            return disk_limit_result(decide(info, probe(client, image)))
        finally:
            client.close()
    except (docker.errors.DockerException, RequestException, DiskProbeError) as exc:
        return skipped("disk limit", f"cannot ask the engine: {exc}")


def ptrace_result(scope: int | None, architecture: str = "") -> CheckResult:
    """The doctor's line for whether a phase's commands could take the sandbox's idle process
    over: not Gantry's idle program (runner/idle.py), nor where the engine's kernel confines
    ptrace."""
    if idle.supported(architecture):
        return passed("ptrace", f"the sandbox's PID 1 is Gantry's undumpable idle ({architecture})")
    if ptrace_scope.confined(scope):
        return passed("ptrace", f"confined: {ptrace_scope.describe(scope)}")
    return warned(
        "ptrace",
        f"not confined: {ptrace_scope.describe(scope)}; {ptrace_scope.RESTART_COST}",
        ptrace_scope.FIX,
    )


def check_ptrace() -> CheckResult:
    """The engine's kernel keeps a container's process from tracing one it did not start."""
    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        try:
            architecture = str(client.info().get("Architecture", ""))
            return ptrace_result(ptrace_scope.engine_scope(client), architecture)
        finally:
            client.close()
    except (docker.errors.DockerException, RequestException) as exc:
        return skipped("ptrace", f"cannot ask the engine: {exc}")


async def check_default_image(settings: Settings) -> CheckResult:
    """`DEFAULT_IMAGE` is on this host, or its registry has it (a manifest lookup, no pull)."""
    return await check_image(
        "default image", "GANTRY_DEFAULT_IMAGE", settings.default_image, settings
    )


async def check_proxy_image(settings: Settings) -> CheckResult | None:
    """`EGRESS_PROXY_IMAGE`, when set apart from the default image: every task under
    `network: off` or `limited` starts its proxy from it."""
    image = settings.egress_proxy_image
    if not image or image == settings.default_image:
        return None
    return await check_image("proxy image", "GANTRY_EGRESS_PROXY_IMAGE", image, settings)


async def check_image(name: str, setting: str, image: str, settings: Settings) -> CheckResult:
    """`image` is on this host, or its registry has it (a manifest lookup, no pull)."""
    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        return skipped(name, f"cannot ask the engine: {exc}")
    try:
        puller = ImagePuller(client, settings.registry_auth)
        if await puller.present(image):
            return passed(name, f"{image} is on this host")
        digest = await puller.lookup(image)
    except ImagePullError as exc:
        return failed(
            name, f"{image} is not on this host, and {exc}", IMAGE_FIX.format(setting=setting)
        )
    except SandboxError as exc:
        return skipped(name, f"cannot ask the engine: {exc}")
    finally:
        client.close()
    return passed(
        name,
        f"{image} is not on this host; {registry_of(image)} has it ({digest[:19]}…): "
        "the first task pulls it",
    )


def check_data_dir(data_dir: Path) -> CheckResult:
    """`DATA_DIR` exists (or can be made) and is writable."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return failed(
            "data dir",
            f"{data_dir} is not writable: {exc.strerror or exc}",
            f"create {data_dir} and give this user write access, or point GANTRY_DATA_DIR "
            "at a writable directory",
        )
    return passed("data dir", f"{data_dir} is writable")


def check_database(settings: Settings) -> CheckResult:
    """The task database answers (SQLite by default, or PostgreSQL), and its schema's revision."""
    database = settings.database
    try:
        version = database_version(database)
        revision = migrate.current(database)
    except DATABASE_ERRORS as exc:
        if database.sqlite_path is not None:
            return failed(
                "database",
                f"cannot open SQLite database {database.sqlite_path}: {exc}",
                "check that GANTRY_DATA_DIR is writable and on a local disk",
            )
        return failed(
            "database",
            f"cannot reach PostgreSQL: {exc}",
            "check GANTRY_DATABASE_URL (host, port, user, password, database) and that the "
            "server accepts connections from this host",
        )
    where = database.sqlite_path or database_host(database)
    return passed("database", f"{version} at {where}; {schema_note(revision)}")


def schema_note(revision: str | None) -> str:
    """Where the schema is against this version's newest migration."""
    newest = migrate.head()
    if revision == newest:
        return f"schema at {newest} (newest)"
    return f"schema at {revision or 'none'}; migrated to {newest} when serve or worker starts"


def database_host(database: Database) -> str:
    """The server and database of a PostgreSQL URL, without its user or password."""
    parsed = urlparse(database.conninfo)
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 5432}{parsed.path}"


def database_version(database: Database) -> str:
    """The engine and its version, from the database itself."""
    if database.sqlite_path is not None:
        with sqlite3.connect(database.sqlite_path, timeout=5) as conn:
            return "SQLite " + str(conn.execute("select sqlite_version()").fetchone()[0])
    with psycopg.connect(database.conninfo, connect_timeout=5) as conn:
        row = conn.execute("show server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"


def inbox_result(failed_deliveries: int, pending: int) -> CheckResult:
    """The inbox's health: deliveries that still failed after their retries need a person."""
    detail = f"{failed_deliveries} failed, {pending} pending deliveries"
    if failed_deliveries:
        return warned(
            "inbox",
            detail,
            "see the log ('kept for the operator') for each reason, fix it, then redeliver "
            "them from the App's Advanced settings",
        )
    return passed("inbox", detail)


def check_inbox(settings: Settings) -> CheckResult:
    """Count the deliveries kept as failed (and those still pending) in the store."""
    database = settings.database
    path = database.sqlite_path
    if path is not None and not path.exists():
        return skipped("inbox", "no database yet")
    try:
        counts = inbox_counts(database)
    except DATABASE_ERRORS as exc:
        return skipped("inbox", f"cannot read the inbox: {exc}")
    return inbox_result(counts.get("failed", 0), counts.get("pending", 0))


def inbox_counts(database: Database) -> dict[str, int]:
    """How many stored deliveries are in each state."""
    if database.sqlite_path is not None:
        with sqlite3.connect(database.sqlite_path, timeout=5) as conn:
            return dict(conn.execute(INBOX_COUNTS).fetchall())
    with psycopg.connect(database.conninfo, connect_timeout=5) as conn:
        return {str(state): int(n) for state, n in conn.execute(INBOX_COUNTS).fetchall()}


async def check_github(settings: Settings) -> CheckResult:
    """The App's credentials are accepted by the GitHub API."""
    if not settings.has_app_credentials:
        return skipped(
            "github",
            "no App credentials (GANTRY_GITHUB_APP_ID and a private key) are set",
        )
    timeout = aiohttp.ClientTimeout(total=GITHUB_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app = await fetch_app(session, settings)
    except gidgethub.HTTPException as exc:
        return failed(
            "github",
            f"{settings.api_url} refused the App's credentials ({exc.status_code})",
            "check GANTRY_GITHUB_APP_ID and that the private key belongs to that App "
            "(generate a new one on the App's settings page if unsure)",
        )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return failed(
            "github",
            f"cannot reach {settings.api_url}: {exc or type(exc).__name__}",
            "check GANTRY_GITHUB_API_URL, DNS and any proxy between this host and GitHub",
        )
    return passed("github", f"authenticated as App {app.get('slug')!r} at {settings.api_url}")


def check_public_url(settings: Settings) -> CheckResult:
    """`PUBLIC_URL` is set, so comments and PRs can link to the signed task pages."""
    if settings.public_url is None:
        return warned(
            "public url",
            "GANTRY_PUBLIC_URL is not set: progress comments and PRs carry no link to the task "
            "page (its live log, phases and diff)",
            "set GANTRY_PUBLIC_URL to the address people's browsers reach this server at, "
            "e.g. https://gantry.example.com (a path prefix behind a proxy is fine)",
        )
    url = str(settings.public_url)
    parsed = urlparse(url)
    if parsed.scheme != "https" and parsed.hostname not in LOOPBACK_HOSTS:
        return warned(
            "public url",
            f"{url} is not https: signed task links would travel in clear text",
            "serve Gantry behind TLS and set GANTRY_PUBLIC_URL to its https:// address",
        )
    return passed("public url", f"task links point at {url}")


async def run_checks(settings: Settings | SettingsError) -> list[CheckResult]:
    """Every check, in the order a person would fix them."""
    results = [check_settings(settings), await asyncio.to_thread(check_docker)]
    if results[-1].failed:
        results.append(skipped("disk limit", "needs the Docker engine"))
        results.append(skipped("ptrace", "needs the Docker engine"))
        results.append(skipped("default image", "needs the Docker engine"))
    else:
        image = DEFAULT_IMAGE if isinstance(settings, SettingsError) else settings.default_image
        results.append(await asyncio.to_thread(check_disk_limit, image))
        results.append(await asyncio.to_thread(check_ptrace))
        results.append(
            skipped("default image", "needs valid settings")
            if isinstance(settings, SettingsError)
            else await check_default_image(settings)
        )
        proxy = None if isinstance(settings, SettingsError) else await check_proxy_image(settings)
        results += [proxy] if proxy is not None else []
    if isinstance(settings, SettingsError):
        for name in ("data dir", "database", "inbox", "public url", "github"):
            results.append(skipped(name, "needs valid settings"))
        return results
    results.append(await asyncio.to_thread(check_data_dir, settings.data_dir))
    results.append(await asyncio.to_thread(check_database, settings))
    results.append(await asyncio.to_thread(check_inbox, settings))
    results.append(check_public_url(settings))
    results.append(await check_github(settings))
    return results


def render(results: list[CheckResult]) -> str:
    """The report as text: one line per check, and the fix under each failure."""
    width = max(len(r.name) for r in results)
    lines = []
    for result in results:
        lines.append(f"[{result.status:>4}] {result.name:<{width}}  {result.detail}")
        if result.fix:
            lines.append(f"       {'':<{width}}  fix: {result.fix}")
    bad = sum(r.failed for r in results)
    warnings = sum(r.status == WARN_MARK for r in results)
    note = f" ({warnings} warning(s))" if warnings else ""
    lines.append(f"all checks passed{note}" if not bad else f"{bad} check(s) failed{note}")
    return "\n".join(lines)
