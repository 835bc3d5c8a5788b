"""The pids count of a container's cgroup, read on the engine's host."""

from __future__ import annotations

from pathlib import Path

from runner.task_count import count_file, host_count

ID = "d4275473f740c2bc1ae8f0b07163292483d950929ca258cd4aad1d56b050a0f1"
V1 = f"9:name=systemd:/docker/{ID}\n8:pids:/docker/{ID}\n0::/docker/{ID}\n"
V2 = f"0::/system.slice/docker-{ID}.scope\n"


def test_cgroup_v1_counts_in_the_pids_hierarchy(tmp_path: Path) -> None:
    assert count_file(V1, ID, tmp_path) == tmp_path / "pids" / "docker" / ID / "pids.current"


def test_cgroup_v2_counts_in_the_unified_hierarchy(tmp_path: Path) -> None:
    expected = tmp_path / "system.slice" / f"docker-{ID}.scope" / "pids.current"
    assert count_file(V2, ID, tmp_path) == expected


def test_a_process_of_another_cgroup_is_not_read_as_the_containers(tmp_path: Path) -> None:
    # Gantry in a container: the PID the engine gave names one of Gantry's own processes here.
    assert count_file("8:pids:/\n0::/\n", ID, tmp_path) is None
    assert count_file(V1.replace(ID, "0" * 64), ID, tmp_path) is None
    assert count_file(V1, "", tmp_path) is None


def test_the_count_is_read_from_the_file_the_process_names(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(V1)
    counted = root / "pids" / "docker" / ID
    counted.mkdir(parents=True)
    (counted / "pids.current").write_text("3\n")
    assert host_count("4242", ID, proc, root) == 3
    assert host_count("4243", ID, proc, root) is None  # gone, or not of this PID namespace
    (counted / "pids.current").write_text("max\n")
    assert host_count("4242", ID, proc, root) is None
