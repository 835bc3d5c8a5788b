"""The container spec is pure: what the engine is asked for, read without an engine."""

from __future__ import annotations

import pytest
from docker.types import Mount

from runner.labels import gantry_labels, is_managed, task_of
from runner.sandbox import (
    CAP_ADD,
    ContainerSpec,
    ExecResult,
    Limits,
    SandboxError,
    check_spec,
    create_kwargs,
    parse_oom_kills,
)


def test_create_kwargs_are_hardened_and_limited() -> None:
    spec = ContainerSpec("img", gantry_labels("7", "o/r", "agent"), Limits(1.5, 2**30, 100))
    kwargs = create_kwargs(spec)
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["cap_add"] == list(CAP_ADD)
    assert "SYS_ADMIN" not in CAP_ADD
    assert "NET_RAW" not in CAP_ADD
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["privileged"] is False
    assert (kwargs["mem_limit"], kwargs["memswap_limit"]) == (2**30, 2**30)
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["pids_limit"] == 100
    assert kwargs["network_mode"] == "none"
    assert kwargs["labels"]["gantry.task"] == "7"
    assert [*kwargs["entrypoint"], *kwargs["command"]] == ["sleep", "infinity"]


def test_the_docker_socket_is_refused() -> None:
    mount = Mount("/var/run/docker.sock", "/var/run/docker.sock", type="bind")
    with pytest.raises(SandboxError, match="Docker socket"):
        check_spec(ContainerSpec("img", {}, mounts=(mount,)))


def test_oom_counters_of_both_cgroup_versions() -> None:
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2
    assert parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n") == 1
    assert parse_oom_kills("") == 0


def test_exec_results_describe_themselves() -> None:
    assert ExecResult(0, False, False, 1.0).ok
    assert ExecResult(137, False, True, 1.0).describe() == "killed: out of memory"
    assert ExecResult(None, True, False, 12.0).describe() == "killed at its timeout after 12s"


def test_labels_mark_and_name_the_task() -> None:
    labels = gantry_labels("42", "o/r", "setup")
    assert is_managed(labels)
    assert task_of(labels) == "42"
    assert not is_managed({"gantry.task": "42"})
    assert not is_managed(None)
