"""Setup, secrets and the cache against the real engine and the GitHub stand-in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import docker
import docker.errors
import pytest
from pydantic import SecretStr

from config.secret_store import Secret, secret_version
from runner.cache import EnvironmentCache, image_ref
from runner.environment import Environment, Environments, PhaseFailedError
from runner.network import bridge_gateway_address
from runner.tasklog import TaskLog
from tests.runner.conftest import FakeClock, Origin, Owner, make_environments, request_for

COUNT_SETUP = (
    "n=$(cat /var/tmp/setup-runs 2>/dev/null || echo 0); echo $((n + 1)) > /var/tmp/setup-runs; "
    "echo setup-ran"
)
MAINTENANCE = 'echo "maintenance at $(git rev-parse HEAD)"'


def secret(name: str, value: str) -> Secret:
    return Secret(name, SecretStr(value), secret_version(name, SecretStr(value)))


async def output_of(env: Environment, log: TaskLog, command: str) -> list[str]:
    """Run a command in the agent phase and return its (redacted) output lines."""
    before = len(log.tail(200))
    result = await env.run(command, log, "agent", 60)
    assert result.ok, log.tail(20)
    # Gantry's own notes (an unenforced disk limit) are not the command's output.
    return [line for line in log.tail(200)[before:] if not line.startswith("[gantry] ")]


async def test_setup_sees_the_secrets_and_the_agent_does_not(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    value = "s3cr3t-" + owner.task_id
    setup = (
        'echo "length ${#PYPI_TOKEN}"; printf %s "$PYPI_TOKEN" | sha256sum; echo "$PYPI_TOKEN"; '
        # Something setup starts in the background must not be running in the agent phase.
        "(sleep 1000 >/dev/null 2>&1 &)"
    )
    needle = base64.b64encode(value.encode()).decode()
    probe = (
        f"N=$(echo {needle} | base64 -d); "
        'echo "env $(env | grep -cF "$N")"; '
        "echo \"proc $(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -cF \"$N\")\"; "
        'echo "files $(grep -rlsF "$N" /workspace /tmp /var/tmp /etc /root /home /run | wc -l)"; '
        "echo \"sleepers $(cat /proc/[0-9]*/cmdline | tr '\\0' ' ' "
        "| grep -o 'slee[p] 1000' | wc -l)\""
    )
    # The same probe in setup proves it would see a leak.
    request = request_for(
        owner,
        origin,
        origin.first_sha,
        setup=(setup, probe),
        secrets=(secret("PYPI_TOKEN", value),),
    )
    async with environments.open(request, task_log) as env:
        lines = await output_of(env, task_log, probe)
    assert lines == ["env 0", "proc 0", "files 0", "sleepers 0"]
    text = task_log.text()
    assert f"[setup] length {len(value)}" in text
    assert hashlib.sha256(value.encode()).hexdigest() in text
    assert "[setup] ***" in text
    assert "[setup] env 1" in text
    assert "[setup] proc 0" not in text
    assert value not in text


async def test_the_cache_skips_setup_and_runs_maintenance_on_the_new_sha(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    base = request_for(
        owner, origin, origin.first_sha, setup=(COUNT_SETUP,), maintenance=(MAINTENANCE,)
    )
    async with environments.open(base, task_log) as first:
        assert not first.cache_hit
        assert await output_of(first, task_log, "cat /var/tmp/setup-runs; git rev-parse HEAD") == [
            "1",
            origin.first_sha,
        ]
    new_sha = await origin.commit({"NEW.md": "new file\n"})
    second_request = request_for(
        owner, origin, new_sha, setup=(COUNT_SETUP,), maintenance=(MAINTENANCE,)
    )
    async with environments.open(second_request, task_log) as second:
        assert second.cache_hit
        assert second.key == first.key
        lines = await output_of(second, task_log, "cat /var/tmp/setup-runs NEW.md; git status -s")
        assert lines == ["1", "new file"]
    text = task_log.text()
    assert text.count("[setup] setup-ran") == 1
    assert f"[maintenance] maintenance at {new_sha}" in text


@pytest.mark.parametrize(
    "change",
    [
        {"env": {"MODE": "other"}},
        {"setup": (COUNT_SETUP + "; echo changed",)},
        {"secrets": (secret("TOKEN", "v2"),)},
    ],
    ids=["env", "setup-script", "secret"],
)
async def test_changing_an_input_misses(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    change: dict[str, object],
) -> None:
    inputs: dict[str, object] = {
        "setup": (COUNT_SETUP,),
        "env": {"MODE": "one"},
        "secrets": (secret("TOKEN", "v1"),),
    }
    first = await environments.prepare(
        request_for(owner, origin, origin.first_sha, **inputs), task_log
    )
    await environments.release(first)
    again = await environments.prepare(
        request_for(owner, origin, origin.first_sha, **inputs), task_log
    )
    await environments.release(again)
    changed = await environments.prepare(
        request_for(owner, origin, origin.first_sha, **(inputs | change)), task_log
    )
    await environments.release(changed)
    assert (first.cache_hit, again.cache_hit, changed.cache_hit) == (False, True, False)
    assert changed.key != first.key
    assert task_log.text().count("[setup] setup-ran") == 2


async def test_an_expired_entry_misses_and_is_collected(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    clock: FakeClock,
    docker_client: docker.DockerClient,
) -> None:
    request = request_for(owner, origin, origin.first_sha, setup=(COUNT_SETUP,), cache_ttl_s=60.0)
    async with environments.open(request, task_log) as first:
        pass
    clock.now += 61
    assert await environments.cache.lookup(first.key) is None
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_ref(first.key))
    async with environments.open(request, task_log) as second:
        assert not second.cache_hit
    assert task_log.text().count("[setup] setup-ran") == 2


async def test_two_tasks_needing_the_same_missing_entry_build_it_once(
    environments: Environments, owner: Owner, origin: Origin, tmp_path: Path
) -> None:
    request = request_for(owner, origin, origin.first_sha, setup=(COUNT_SETUP + "; sleep 1",))
    logs = [TaskLog(tmp_path / f"{n}.log") for n in range(2)]
    results = await asyncio.gather(*(environments.prepare(request, log) for log in logs))
    for environment in results:
        await environments.release(environment)
    assert sorted(e.cache_hit for e in results) == [False, True]
    assert sum(log.text().count("[setup] setup-ran") for log in logs) == 1


async def test_reset_cache_drops_the_repository_entries(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    request = request_for(owner, origin, origin.first_sha, setup=(COUNT_SETUP,))
    async with environments.open(request, task_log) as first:
        pass
    assert await environments.cache.drop_repo(owner.repo) == 1
    assert await environments.cache.lookup(first.key) is None


async def test_a_failing_setup_reports_its_phase_and_leaves_nothing(
    environments: Environments,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
    docker_client: docker.DockerClient,
) -> None:
    request = request_for(owner, origin, origin.first_sha, setup=("echo broken; exit 4",))
    with pytest.raises(PhaseFailedError) as caught:
        await environments.prepare(request, task_log)
    assert caught.value.phase == "setup"
    assert caught.value.result.exit_code == 4
    assert (
        docker_client.containers.list(all=True, filters={"label": f"gantry.task={owner.task_id}"})
        == []
    )


TRUSTED_SETUP = "#!/bin/sh\necho trusted-setup\n"
# A pull request's setup: plant a `git` that would run first in PATH, and leak the secret.
HOSTILE_SETUP = (
    "#!/bin/sh\necho hostile-setup\n"
    "printf '#!/bin/sh\\necho planted\\n' > /usr/local/bin/git; chmod +x /usr/local/bin/git\n"
    'printf %s "$TOKEN" | rev > /var/tmp/leak\n'
)
HOSTILE_MAINTENANCE = '#!/bin/sh\necho "maintenance sees [${TOKEN:-no secret}]"\n'


async def test_an_untrusted_sha_resumes_from_setup_at_the_trusted_head(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    trusted = await origin.commit({"setup.sh": TRUSTED_SETUP, "maint.sh": "echo ok\n"})
    files = {"setup.sh": HOSTILE_SETUP, "maint.sh": HOSTILE_MAINTENANCE, "theirs.txt": "pr\n"}
    untrusted = await origin.forge.commit_files(origin.owner, origin.name, "pr", files)
    value = "s3cr3t-" + owner.task_id
    inputs = {
        "setup": ("sh setup.sh",),
        "maintenance": ("sh maint.sh",),
        "secrets": (secret("TOKEN", value),),
    }
    request = request_for(owner, origin, untrusted, trusted_sha=trusted, **inputs)
    probe = "git rev-parse HEAD; cat theirs.txt; ls /usr/local/bin; ls /var/tmp"
    async with environments.open(request, task_log) as env:
        lines = await output_of(env, task_log, probe)
    assert lines == [untrusted, "pr"]  # their code, and nothing their setup would have left
    text = task_log.text()
    assert "[setup] trusted-setup" in text
    assert "hostile-setup" not in text
    assert "[maintenance] maintenance sees [no secret]" in text
    # The default branch's next task resumes from the same image: nothing planted in it.
    later = request_for(owner, origin, trusted, trusted_sha=trusted, **inputs)
    async with environments.open(later, task_log) as env:
        assert env.cache_hit
        assert await output_of(env, task_log, "command -v git; ls /var/tmp") == ["/usr/bin/git"]
    images = docker.from_env().images.list(filters={"label": f"gantry.repo={owner.repo}"})
    assert len(images) == 1  # one environment, built at the trusted head


def test_the_secret_build_of_an_untrusted_request_is_at_the_trusted_head(
    owner: Owner, origin: Origin
) -> None:
    request = request_for(owner, origin, "b" * 40, trusted_sha="a" * 40)
    assert request.untrusted
    build = request.trusted_build()
    assert (build.sha, build.untrusted) == ("a" * 40, False)
    assert not request_for(owner, origin, "a" * 40, trusted_sha="a" * 40).untrusted
    assert not request_for(owner, origin, "a" * 40).untrusted


async def test_each_deployment_owns_its_cache_images(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    request = request_for(owner, origin, origin.first_sha, setup=(COUNT_SETUP,))
    async with environments.open(request, task_log) as env:
        key = env.key
    image = docker.from_env().images.get(image_ref(key))
    assert image.labels["gantry.owner"] == owner.label_owner
    other = EnvironmentCache(environments.client, owner="another-deployment")
    assert await other.lookup(key) is None
    assert await other.drop_repo(owner.repo) == 0
    assert await environments.cache.lookup(key) is not None


# Whether anything on the container's own network accepts TCP on the relay's port, asked for
# a few seconds (the proxy starts beside the container, and may not listen at once).
RELAY_SCAN = r"""python3 - <<'SCAN'
import concurrent.futures, ipaddress, socket, time
own = socket.gethostbyname(socket.gethostname())
def accepts(address):
    try:
        socket.create_connection((str(address), 3129), timeout=1).close()
        return True
    except OSError:
        return False
hosts = list(ipaddress.ip_network(f"{own}/28", strict=False).hosts())
found, deadline = False, time.monotonic() + 4
with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
    while not found and time.monotonic() < deadline:
        found = any(pool.map(accepts, hosts))
        time.sleep(0.2)
print("relay", "found" if found else "none")
SCAN"""


async def test_the_gateway_relay_listens_after_maintenance_and_until_the_agent_phase_ends(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    clock: FakeClock,
    owner: Owner,
    origin: Origin,
    task_log: TaskLog,
) -> None:
    environments = make_environments(docker_client, tmp_path / "data", clock, owner)
    # What the relay dials does not matter: the scan only asks who accepts on its port.
    environments.gateway = (bridge_gateway_address(docker_client), 9)
    request = request_for(owner, origin, origin.first_sha, maintenance=(RELAY_SCAN,))
    async with environments.open(request, task_log) as first:
        assert not first.cache_hit
    async with environments.open(request, task_log) as env:
        assert env.cache_hit
        during_the_agent_phase = await output_of(env, task_log, RELAY_SCAN)
        await env.close_gateway()
        after_it = await output_of(env, task_log, RELAY_SCAN)
    assert "[maintenance] relay none" in task_log.text()
    assert during_the_agent_phase == ["relay found"]
    assert after_it == ["relay none"]


# A pull request's "install deps" script: plants a watcher for the agent's token, returns at once.
TOKEN_WATCHER = """#!/bin/sh
( while :; do
    for e in /proc/[0-9]*/environ; do
      tr '\\0' '\\n' < "$e" 2>/dev/null | grep '^OPENAI_API_KEY=' >> /tmp/stolen
    done
    [ -s /tmp/stolen ] && break
    sleep 0.2
  done ) >/dev/null 2>&1 &
echo deps installed
"""


async def test_what_maintenance_leaves_running_never_sees_the_agents_token(
    environments: Environments, owner: Owner, origin: Origin, task_log: TaskLog
) -> None:
    untrusted = await origin.commit({"bootstrap.sh": TOKEN_WATCHER})
    request = request_for(
        owner, origin, untrusted, trusted_sha=origin.first_sha, maintenance=("sh ./bootstrap.sh",)
    )
    token = "gantry-task-token-" + owner.task_id
    async with environments.open(request, task_log) as env:
        # The agent phase as the pipeline runs it: the token only in the agent's exec.
        agent = await env.run("sleep 2", task_log, "agent", 30, {"OPENAI_API_KEY": token})
        assert agent.ok
        await env.close_gateway()
        await env.end_phase()
        stolen = await output_of(env, task_log, "cat /tmp/stolen 2>/dev/null; echo end")
    assert "[maintenance] deps installed" in task_log.text()
    assert stolen == ["end"]
