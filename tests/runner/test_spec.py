"""The container spec is pure: what the engine is asked for, read without an engine."""

from __future__ import annotations

import pytest
from docker.types import Mount

from runner.disk_limit import DiskLimitSupport, decide, is_refusal, precheck
from runner.labels import gantry_labels, is_managed, task_of
from runner.sandbox import (
    CAP_ADD,
    ContainerSpec,
    ExecResult,
    Limits,
    SandboxError,
    check_spec,
    create_kwargs,
    disk_size_for,
    human_bytes,
    parse_oom_kills,
    unenforced_note,
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
    assert kwargs["log_config"] == {"type": "none"}  # nothing reads it; it would fill the host


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


OVERLAY_EXT4 = {
    "Driver": "overlay2",
    "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
}
OVERLAY_XFS = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "xfs"]]}
BTRFS = {"Driver": "btrfs", "DriverStatus": [["Build Version", "Btrfs v6.2"]]}
PQUOTA_REFUSAL = "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"


def test_disk_support_is_decided_from_the_engine_info_and_a_probe() -> None:
    ext4 = decide(OVERLAY_EXT4, None)
    assert not ext4.enforced
    assert "overlay2 on extfs" in ext4.detail
    assert precheck(OVERLAY_XFS) is None  # xfs without pquota looks the same: the probe tells
    refused = decide(OVERLAY_XFS, PQUOTA_REFUSAL)
    assert not refused.enforced
    assert "pquota" in refused.detail
    assert decide(OVERLAY_XFS, None) == DiskLimitSupport(
        True, "overlay2 on xfs with project quotas enforces sizes", False
    )
    assert decide(BTRFS, None).counts_image
    assert not decide({"Driver": "vfs"}, None).enforced
    assert is_refusal(PQUOTA_REFUSAL)
    assert not is_refusal("No such image: gantry-test-base:bookworm")


def test_the_size_option_is_passed_only_where_enforced() -> None:
    spec = ContainerSpec("img", {}, Limits(1.0, 2**30, 64, disk=512 * 1024**2))
    xfs = decide(OVERLAY_XFS, None)
    assert disk_size_for(spec.limits, xfs, 300 * 1024**2) == 512 * 1024**2
    assert create_kwargs(spec, 512 * 1024**2)["storage_opt"] == {"size": str(512 * 1024**2)}
    # btrfs counts the image's own bytes against the qgroup: the limit is on what is written.
    assert disk_size_for(spec.limits, decide(BTRFS, None), 300 * 1024**2) == 812 * 1024**2
    unenforced = decide(OVERLAY_EXT4, None)
    assert disk_size_for(spec.limits, unenforced, 0) is None
    assert "storage_opt" not in create_kwargs(spec, None)
    assert disk_size_for(Limits(disk=None), xfs, 0) is None
    assert Limits().disk == 10 * 1024**3


def test_an_unenforced_limit_is_said_in_the_log_with_the_fix() -> None:
    note = unenforced_note(Limits(disk=10 * 1024**3), decide(OVERLAY_EXT4, None))
    assert note is not None
    assert "disk limit of 10 GiB is NOT enforced" in note
    assert "xfs mounted with pquota" in note
    assert "docs/operating.md#disk-limit" in note
    assert unenforced_note(Limits(), decide(OVERLAY_XFS, None)) is None
    assert unenforced_note(Limits(disk=None), decide(OVERLAY_EXT4, None)) is None


def test_a_full_disk_describes_itself() -> None:
    full = ExecResult(1, False, False, 3.0, disk_full=True, disk_limit=10 * 1024**3)
    assert not full.ok
    assert full.describe() == "failed: disk limit of 10 GiB reached (exit code 1)"
    assert human_bytes(512 * 1024**2) == "512 MiB"
    assert human_bytes(1536 * 1024**2) == "1.5 GiB"
    assert human_bytes(100) == "100 bytes"
