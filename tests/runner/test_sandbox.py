"""The sandbox against the real engine: hardening, limits, time limits, streamed output."""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runner import idle
from runner import sandbox as sandbox_module
from runner.collect import tar_file
from runner.idle import IDLE_PATH
from runner.labels import gantry_labels
from runner.ptrace_scope import SCOPE_FILE, confined, engine_scope, parse_scope
from runner.sandbox import CAP_ADD, ContainerSpec, Limits, Sandbox, running
from runner.tasklog import TaskLog
from tests.runner.conftest import Owner
from tests.runner.test_disk_limit import VOLUME_IMAGE, committed_image
from tests.support import TEST_BASE_IMAGE

HIJACK = Path(__file__).parent.parent / "sandbox_attacks" / "hijack_idle.py"

SMALL = Limits(cpus=1.0, memory=128 * 1024**2, pids=64)
# Bits of CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) FSETID(4) SETGID(6) SETUID(7).
EXPECTED_CAP_EFF = f"{0b11011011:016x}"


async def no_idle_program(client: docker.DockerClient, image: str) -> None:
    """As on an engine the idle program is not written for: docker-init and the image's sleep."""
    return None


def spec_for(owner: Owner, limits: Limits = SMALL) -> ContainerSpec:
    labels = gantry_labels(owner.task_id, owner.repo, "agent", owner.label_owner)
    return ContainerSpec(image=TEST_BASE_IMAGE, labels=labels, limits=limits)


def host_log_bytes(client: docker.DockerClient, container_id: str) -> int:
    """The size of the engine's log file of a container on the host (0: it keeps none)."""
    path = client.api.inspect_container(container_id)["LogPath"]
    return os.path.getsize(path) if path and os.path.exists(path) else 0


def flood(mib: int) -> str:
    """A command that writes `mib` MiB of 64 KiB lines to the container's own output."""
    return f"head -c {mib * 1024**2} /dev/zero | tr '\\0' a | fold -w 65536 > /proc/1/fd/1"


def assert_gone(client: docker.DockerClient, container_id: str) -> None:
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_id)


async def test_inspected_host_config_shows_the_hardening(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        attrs = docker_client.api.inspect_container(sandbox.id)
        host = attrs["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == sorted(CAP_ADD)
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert (host["Memory"], host["MemorySwap"]) == (SMALL.memory, SMALL.memory)
        assert host["NanoCpus"] == 1_000_000_000
        assert host["PidsLimit"] == SMALL.pids
        assert host["NetworkMode"] == "none"
        assert not any("docker.sock" in m.get("Source", "") for m in attrs["Mounts"])
        assert attrs["Config"]["Labels"]["gantry.managed"] == "1"
        assert attrs["Config"]["Labels"]["gantry.task"] == owner.task_id
        command = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ls /var/run"
        result = await sandbox.run(command, task_log, "probe", 30)
        assert result.ok
        status = dict(line.split(":\t") for line in task_log.tail(5) if ":\t" in line)
        assert status == {
            "CapEff": EXPECTED_CAP_EFF,
            "CapBnd": EXPECTED_CAP_EFF,
            "NoNewPrivs": "1",
        }
        assert "docker.sock" not in task_log.text()
    assert_gone(docker_client, sandbox.id)


async def test_output_is_streamed_line_by_line_and_the_exit_code_kept(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run(
            "echo one; echo two; echo oops >&2; printf 'no newline'; exit 3",
            task_log,
            "checks",
            30,
        )
    assert result.exit_code == 3
    assert not result.ok
    assert result.describe() == "exit code 3"
    # Gantry's own notes (an unenforced disk limit on this engine) are not the command's output.
    lines = [line for line in task_log.text().splitlines() if "] [gantry] " not in line]
    # stdout and stderr are separate pipes: each keeps its order, not their interleaving.
    assert [line for line in lines if "oops" not in line] == [
        "[checks] one",
        "[checks] two",
        "[checks] no newline",
    ]
    assert "[checks] oops" in lines
    assert_gone(docker_client, sandbox.id)


async def test_secret_values_are_redacted_from_the_log(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    task_log.add_secrets(["hunter2-very-secret"])
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run(
            'echo "token=$TOKEN"; printf "%s" "$TOKEN" | head -c 7; echo; echo "$TOKEN$TOKEN"',
            task_log,
            "setup",
            30,
            env={"TOKEN": "hunter2-very-secret"},
        )
    assert result.ok
    text = task_log.text()
    assert "hunter2-very-secret" not in text
    assert "[setup] token=***" in text
    assert "[setup] ******" in text


async def test_a_memory_hog_is_reported_as_out_of_memory(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    hog = 'python3 -c "x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))"'
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run(hog, task_log, "agent", 60)
        assert result.oom_killed
        assert result.describe() == "killed: out of memory"
        # An ordinary failure afterwards is not blamed on memory.
        again = await sandbox.run("kill -9 $$", task_log, "agent", 30)
        assert again.exit_code == 137
        assert not again.oom_killed
    assert_gone(docker_client, sandbox.id)


async def test_a_fork_bomb_stays_inside_its_pid_limit(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        # Every copy keeps forking copies of itself; bash retries a failed fork, never exits.
        bomb = asyncio.create_task(
            sandbox.run("exec bash -c 'b() { while :; do b & done; }; b'", task_log, "agent", 4)
        )
        await asyncio.sleep(2.5)
        # One sample (no second one a second later): read before the time limit ends it all.
        stats: Any = await asyncio.to_thread(
            lambda: sandbox.container.stats(stream=False, one_shot=True)
        )
        result = await bomb
    pids = stats["pids_stats"]["current"]
    assert SMALL.pids * 3 // 4 <= pids <= SMALL.pids
    # It never finishes on its own: killed at its time limit, with the engine unharmed.
    assert result.timed_out
    assert "fork" in task_log.text().lower()
    assert_gone(docker_client, sandbox.id)
    assert docker_client.ping()


async def test_sleep_infinity_is_killed_at_its_time_limit(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run("echo started; sleep infinity", task_log, "agent", 1.5)
        assert result.timed_out
        assert result.exit_code is None
        assert 1.5 <= result.seconds < 15
        assert result.describe().startswith("killed at its timeout")
    assert "[agent] started" in task_log.text()
    assert "time limit of 2s reached" in task_log.text()
    assert_gone(docker_client, sandbox.id)


# Left behind by an "agent": a background loop, a double-forked setsid loop, and a loop running
# as another user (which root in the container, without CAP_KILL, could not even signal).
STRAYS = (
    # An image imported from a mktemp root has `/` 0700, which btrfs keeps: let nobody in.
    "chmod 755 / && "
    "(while true; do date >> /workspace/leak; sleep 0.1; done) > /dev/null 2>&1 & "
    "setsid sh -c '(while true; do date >> /workspace/leak2; sleep 0.1; done) &' "
    "> /dev/null 2>&1 < /dev/null & "
    "setpriv --reuid 65534 --regid 65534 --clear-groups "
    "sh -c 'while true; do date >> /tmp/leak3; sleep 0.1; done' > /dev/null 2>&1 & "
    "sleep 0.5; echo planted"
)
LEAKS = "/workspace/leak /workspace/leak2 /tmp/leak3"


async def leak_sizes(sandbox: Sandbox, log: TaskLog) -> list[int]:
    """The sizes of the files the strays append to."""
    result = await sandbox.run(f"wc -c {LEAKS} | head -n 3", log, "probe", 30)
    assert result.ok
    return [int(line.split()[0]) for line in log.tail(3)]


def process_commands(sandbox: Sandbox) -> list[str]:
    """What runs in the container, as the engine sees it from outside."""
    top: Any = sandbox.container.top()
    column = top["Titles"].index("CMD")
    return [process[column] for process in top["Processes"]]


async def test_end_phase_kills_what_the_agent_left_running(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        assert (await sandbox.run(STRAYS, task_log, "agent", 30)).ok
        first = await leak_sizes(sandbox, task_log)
        await asyncio.sleep(0.6)
        second = await leak_sizes(sandbox, task_log)
        assert all(b > a > 0 for a, b in zip(first, second, strict=True)), (first, second)
        assert len(process_commands(sandbox)) >= 4  # the idle and three loops (and sleeps)
        started = time.monotonic()
        await sandbox.end_phase()
        took = time.monotonic() - started
        after = await leak_sizes(sandbox, task_log)
        await asyncio.sleep(1.0)
        assert await leak_sizes(sandbox, task_log) == after
        assert after >= second  # the files stay: only the processes went
        assert process_commands(sandbox) == [IDLE_PATH]  # a fresh idle alone
        # The sandbox works as before, and still knows about its memory limit.
        again = await sandbox.run("echo still here", task_log, "checks", 30)
        assert again.ok
    print(f"end_phase took {took:.2f}s")
    assert took < 10


async def file_stays(sandbox: Sandbox, path: str, log: TaskLog) -> int:
    """Assert that nothing writes to `path` for a second, during a next phase; its size."""
    size = f"cat {path} 2>/dev/null | wc -c"
    assert (await sandbox.run(size, log, "checks", 30)).ok
    first = log.tail(1)
    await asyncio.sleep(1.0)
    assert (await sandbox.run(size, log, "checks", 30)).ok
    assert log.tail(1) == first  # nothing writes during the checks
    return int(first[0])


def started_at(docker_client: docker.DockerClient, sandbox: Sandbox) -> str:
    """When the engine last (re)started the container."""
    return str(docker_client.api.inspect_container(sandbox.id)["State"]["StartedAt"])


# A stray that names itself like the idle process: only its PID gives it away.
DISGUISED = (
    f"bash -c \"exec -a '{IDLE_PATH}' sh -c 'while true; do date >> /workspace/disguised; "
    "sleep 0.1; done'\" > /dev/null 2>&1 < /dev/null & sleep 0.3"
)


async def test_end_phase_restarts_only_when_something_is_left_running(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        assert sandbox.idle_guarded  # PID 1 is Gantry's idle program (an x86-64 engine)
        assert (await sandbox.run("echo clean", task_log, "agent", 30)).ok
        before = started_at(docker_client, sandbox)
        await sandbox.end_phase()
        assert started_at(docker_client, sandbox) == before  # nothing to kill: no restart
        assert (await sandbox.run(DISGUISED, task_log, "agent", 30)).ok
        disguised = [c for c in process_commands(sandbox) if c.startswith(IDLE_PATH)]
        assert len(disguised) == 2  # it runs, named like the idle process
        await sandbox.end_phase()
        assert started_at(docker_client, sandbox) != before
        await file_stays(sandbox, "/workspace/disguised", task_log)  # the stray is gone
        await sandbox.end_phase()  # and from the fresh start on, a clean phase skips again
        assert process_commands(sandbox) == [IDLE_PATH]


async def test_a_start_cancelled_while_the_engine_creates_leaves_no_container(
    docker_client: docker.DockerClient, owner: Owner
) -> None:
    label: dict[str, Any] = {"label": f"gantry.task={owner.task_id}"}
    cancelled = 0
    for delay in (0.0, 0.01, 0.05):
        starting = asyncio.create_task(Sandbox.start(docker_client, spec_for(owner)))
        await asyncio.sleep(delay)  # the engine is making it in a thread
        starting.cancel()
        try:
            sandbox = await starting
        except asyncio.CancelledError:
            cancelled += 1
        else:
            await sandbox.remove()  # a fast engine had it up before the cancel came
        assert docker_client.containers.list(all=True, filters=label) == []
    assert cancelled  # at least one cancel landed while the engine was at work


async def test_an_image_volume_stays_within_the_disk_limit_where_the_layer_is_not_enforced(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # The image's VOLUME is a tmpfs of the limit on any engine (this one may not size layers).
    image = committed_image(docker_client, VOLUME_IMAGE, ["VOLUME /data"])
    limits = Limits(cpus=1.0, memory=256 * 1024**2, pids=64, disk=64 * 1024**2)
    spec = ContainerSpec(image=image, labels=spec_for(owner).labels, limits=limits)
    async with running(docker_client, spec) as sandbox:
        names = {
            m["Name"]
            for m in docker_client.api.inspect_container(sandbox.id)["Mounts"]
            if m["Type"] == "volume" and m["Name"] != idle.VOLUME_NAME  # the idle's stays
        }
        result = await sandbox.run(
            "dd if=/dev/zero of=/data/big bs=1M count=1024", task_log, "agent", 120
        )
        assert (await sandbox.run("stat -c %s /data/big", task_log, "probe", 30)).ok
        stayed = int(task_log.tail(1)[0].split()[-1])
    assert result.disk_full, result
    assert result.describe() == "failed: disk limit of 64 MiB reached (exit code 1)"
    assert stayed <= 64 * 1024**2
    assert names
    for name in names:
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)


async def test_a_flood_of_the_containers_own_output_never_reaches_the_hosts_disk(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # PID 1's stdout is the engine's log: a command that writes there bypasses its exec.
    # Gantry's idle program does not even let it open that (undumpable: /proc/1/fd is shut).
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run(flood(64), task_log, "agent", 120)
        kept = host_log_bytes(docker_client, sandbox.id)
    assert not result.ok
    assert "Permission denied" in task_log.text()
    assert kept < 1024**2


async def test_a_flood_of_docker_inits_output_never_reaches_the_hosts_disk(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where the engine has no idle program, PID 1 is docker-init, whose stdout anyone can open.
    monkeypatch.setattr(sandbox_module, "idle_volume_of", no_idle_program)
    async with running(docker_client, spec_for(owner)) as sandbox:
        result = await sandbox.run(flood(64), task_log, "agent", 120)
        kept = host_log_bytes(docker_client, sandbox.id)
    assert result.ok, task_log.text()
    assert kept < 1024**2


async def run_bounded(sandbox: Sandbox, command: str, log: TaskLog, limit_s: float) -> float:
    """Run a failing command; how long until `run` returned (it must, within a minute)."""
    started = time.monotonic()
    run = asyncio.ensure_future(sandbox.run(command, log, "agent", limit_s))
    done, _ = await asyncio.wait([run], timeout=60)
    if not done:
        run.cancel()
    assert done, f"run() still waiting after 60s: {log.tail(3)}"
    assert not run.result().ok
    return time.monotonic() - started


async def test_a_fifo_where_the_disk_probe_used_to_write_does_not_hold_the_phase(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    image = committed_image(docker_client, VOLUME_IMAGE, ["VOLUME /data"])
    limits = Limits(cpus=1.0, memory=256 * 1024**2, pids=64, disk=64 * 1024**2)
    spec = ContainerSpec(image=image, labels=spec_for(owner).labels, limits=limits)
    trap = "mkfifo /data/.gantry-disk-probe /.gantry-disk-probe; exit 1"
    async with running(docker_client, spec) as sandbox:
        took = await run_bounded(sandbox, trap, task_log, 10)
    assert took < 10


async def test_a_disk_probe_that_never_answers_restarts_the_sandbox_and_ends_the_phase(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    limits = Limits(cpus=1.0, memory=128 * 1024**2, pids=64, disk=64 * 1024**2)
    image = committed_image(docker_client, VOLUME_IMAGE, ["VOLUME /data"])
    spec = ContainerSpec(image=image, labels=spec_for(owner).labels, limits=limits)
    # The agent's own `head`, first on PATH, holds whatever runs it; and a stray it leaves.
    trap = (
        "printf '#!/bin/sh\\nexec sleep 1000\\n' > /usr/local/bin/head; "
        "chmod +x /usr/local/bin/head; (sleep 1000 &) ; exit 1"
    )
    async with running(docker_client, spec) as sandbox:
        sandbox.internal_limit_s = 3.0
        took = await run_bounded(sandbox, trap, task_log, 10)
        assert "no answer within 3s; restarting it" in task_log.text()
        assert process_commands(sandbox) == [IDLE_PATH]  # a fresh idle: the stray went
        assert (await sandbox.run("echo still here", task_log, "checks", 30)).ok
    assert took < 10


def host_ptrace_confined() -> bool:
    """What this machine's kernel (the test engine's) says about ptrace."""
    path = Path(SCOPE_FILE)
    return confined(parse_scope(path.read_text()) if path.exists() else None)


def test_only_a_local_engines_kernel_is_trusted_to_confine_ptrace(tmp_path: Path) -> None:
    yama = tmp_path / "ptrace_scope"
    yama.write_text("1\n")
    local = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="1.41")
    remote = docker.DockerClient(base_url="tcp://192.0.2.1:2376", version="1.41")
    try:
        assert engine_scope(local, yama) == 1
        assert engine_scope(remote, yama) is None  # another machine's kernel: unknown
        assert engine_scope(local, tmp_path / "absent") is None  # no Yama
    finally:
        local.close()
        remote.close()


async def test_a_clean_phase_ends_without_a_restart(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        assert sandbox.idle_guarded  # whatever the kernel says about ptrace
        assert (await sandbox.run("echo clean", task_log, "agent", 30)).ok
        before = started_at(docker_client, sandbox)
        started = time.monotonic()
        await sandbox.end_phase()
        took = time.monotonic() - started
        assert started_at(docker_client, sandbox) == before
    print(f"end_phase after a clean phase: {took:.2f}s")


async def test_a_child_left_to_the_idle_program_is_reaped_and_costs_no_restart(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        # The shell exits at once; its child goes on, is handed to PID 1, then exits.
        assert (await sandbox.run("sleep 0.3 &", task_log, "agent", 30)).ok
        await asyncio.sleep(1.0)
        assert process_commands(sandbox) == [IDLE_PATH]  # no zombie left behind
        before = started_at(docker_client, sandbox)
        await sandbox.end_phase()
        assert started_at(docker_client, sandbox) == before


# What the agent's hijacked idle process runs: it appends to a file every 0.2 s.
SURVIVOR = (
    "import time\n"
    "while True:\n"
    "    open('/workspace/after-the-agent', 'a').write('x')\n"
    "    time.sleep(0.2)\n"
)
# The other way in: rewrite the idle process's memory through /proc, as root and as any user.
WRITE_MEMORY = (
    "import os\n"
    "for uid in (0, 65534):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os.setgid(uid); os.setuid(uid)\n"
    "        try:\n"
    "            open('/proc/1/mem', 'r+b').close(); print('memory open as', uid, flush=True)\n"
    "        except OSError as exc:\n"
    "            print('memory refused as', uid, exc.errno, flush=True)\n"
    "        os._exit(0)\n"
    "    os.waitpid(pid, 0)\n"
)


async def test_the_idle_process_cannot_be_taken_over_by_the_agent(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    async with running(docker_client, spec_for(owner)) as sandbox:
        await sandbox.copy_in("/", tar_file("/tmp/hijack.py", HIJACK.read_bytes()))
        await sandbox.copy_in("/", tar_file("/tmp/memory.py", WRITE_MEMORY.encode()))
        assert (await sandbox.run("echo setup", task_log, "environment", 30)).ok
        before = started_at(docker_client, sandbox)
        command = f"python3 /tmp/hijack.py {shlex.quote(SURVIVOR)}; python3 /tmp/memory.py"
        await sandbox.run(f"{command}; sleep 0.5", task_log, "agent", 30)
        assert "hijacked idle pid" not in task_log.text()
        assert "memory open" not in task_log.text()
        assert "memory refused as 65534 13" in task_log.text()
        await sandbox.end_phase()
        assert started_at(docker_client, sandbox) == before  # nothing was left: no restart
        assert process_commands(sandbox) == [IDLE_PATH]
        assert await file_stays(sandbox, "/workspace/after-the-agent", task_log) == 0


async def test_an_idle_process_taken_over_where_the_engine_has_no_idle_program_is_ended(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_module, "idle_volume_of", no_idle_program)
    async with running(docker_client, spec_for(owner)) as sandbox:
        assert not sandbox.idle_guarded
        await sandbox.copy_in("/", tar_file("/tmp/hijack.py", HIJACK.read_bytes()))
        assert (await sandbox.run("echo setup", task_log, "environment", 30)).ok
        command = f"python3 /tmp/hijack.py {shlex.quote(SURVIVOR)}; sleep 0.5"
        await sandbox.run(command, task_log, "agent", 30)
        # Where the kernel confines ptrace the take-over fails; elsewhere the restart ends it.
        assert host_ptrace_confined() or "hijacked idle pid" in task_log.text()
        await sandbox.end_phase()
        await file_stays(sandbox, "/workspace/after-the-agent", task_log)


def test_an_idle_volume_holding_another_program_is_rewritten_before_use(
    docker_client: docker.DockerClient,
) -> None:
    volume = f"gantry-idle-test-{os.getpid()}"
    planted = b"#!/bin/sh\nwhile :; do cat /proc/*/environ >> /workspace/loot; sleep 1; done\n"
    try:
        idle.fill(docker_client, TEST_BASE_IMAGE, volume)
        writer = docker_client.containers.create(
            TEST_BASE_IMAGE,
            entrypoint=["true"],
            mounts=[docker.types.Mount(idle.IDLE_DIR, volume, type="volume")],
        )
        try:
            writer.put_archive(idle.IDLE_DIR, idle.archive(planted))
            assert idle.read_archive(b"".join(writer.get_archive(idle.IDLE_PATH)[0])) == planted
        finally:
            writer.remove(force=True)
        idle.fill(docker_client, TEST_BASE_IMAGE, volume)
        reader = docker_client.containers.create(
            TEST_BASE_IMAGE, entrypoint=["true"], mounts=[idle.mount(volume)]
        )
        try:
            held = idle.read_archive(b"".join(reader.get_archive(idle.IDLE_PATH)[0]))
        finally:
            reader.remove(force=True)
        assert held == idle.IDLE_BINARY
    finally:
        docker_client.volumes.get(volume).remove(force=True)


async def test_a_pruned_idle_volume_is_filled_again_for_the_next_task(
    docker_client: docker.DockerClient,
    owner: Owner,
    task_log: TaskLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    volume = f"gantry-idle-test-{os.getpid()}"  # its own: other sandboxes may use the engine's
    monkeypatch.setattr(sandbox_module, "IDLE_VOLUMES", idle.IdleVolumes(volume))
    try:
        async with running(docker_client, spec_for(owner)) as sandbox:
            assert sandbox.idle_guarded
        docker_client.volumes.get(volume).remove()  # as `docker volume prune` would
        async with running(docker_client, spec_for(owner)) as sandbox:
            assert (await sandbox.run("echo started", task_log, "agent", 30)).ok
            assert process_commands(sandbox) == [IDLE_PATH]
    finally:
        docker_client.volumes.get(volume).remove(force=True)


# A process that forks and exits in a loop, with only what the image ships (perl): each PID
# lives a moment. It appends to a file while it runs.
HOPPER = (
    'perl -MPOSIX -e \'open STDIN, "</dev/null"; open STDOUT, ">/dev/null"; '
    'open STDERR, ">/dev/null"; $t = 0; while (1) { $p = fork; POSIX::_exit(0) if $p; '
    'next unless defined $p; if (++$t % 200 == 0) { open F, ">>/workspace/alive"; '
    'print F "x"; close F } }\' & sleep 1'
)


async def test_a_process_that_hops_from_pid_to_pid_does_not_outlive_the_phase(
    docker_client: docker.DockerClient, owner: Owner, task_log: TaskLog
) -> None:
    # The engine's process list reads the cgroup's PIDs, then runs `ps` for them: a hopper is
    # rarely in both. Three tries, as it slipped through four times in five.
    async with running(docker_client, spec_for(owner)) as sandbox:
        for _ in range(3):
            await sandbox.run(HOPPER, task_log, "agent", 30)
            await sandbox.end_phase()
            await file_stays(sandbox, "/workspace/alive", task_log)
            await sandbox.end_phase()
