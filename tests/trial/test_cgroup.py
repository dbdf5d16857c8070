"""Where per-trial groups are made, on a cgroup v2 tree laid out as the kernel shows it (plain files under
tmp_path): which controllers are used, what is written, what the trial's record says. The real kernel
paths (v1 here) are exercised by test_budgets.py."""
from __future__ import annotations

from pathlib import Path

import os

import pytest

from ab.gpt.brute.fract.trial import cgroup
from ab.gpt.brute.fract.trial.cgroup import CgroupUnavailable, Cgroups


@pytest.fixture(autouse=True)
def kernel_files(monkeypatch):
    """A new group's cgroup.procs exists at once under the kernel; here it appears when opened."""
    real = os.open
    def open_(path, flags, mode=0o777, **kw):
        if str(path).endswith("cgroup.procs"):
            flags, mode = flags | os.O_CREAT, 0o644
        return real(path, flags, mode, **kw)

    monkeypatch.setattr(cgroup.os, "open", open_)


def v2_tree(tmp_path: Path, controllers: str, procs: str = "") -> tuple[list, dict, Path]:
    base = tmp_path / "cg" / "job"
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text(controllers + "\n")
    (base / "cgroup.subtree_control").write_text("")
    (base / "cgroup.procs").write_text(procs)
    return [(str(tmp_path / "cg"), "/", "cgroup2", set())], {"": "/job"}, base


def test_memory_alone_is_enough_and_processes_stay_with_the_uid_limit(tmp_path):
    """A GPU VM seen here delegates memory but not pids: trials still get a memory group."""
    mounts, own, base = v2_tree(tmp_path, "cpuset cpu io memory")
    groups = Cgroups.detect_v2(mounts, own)
    assert groups.version == 2 and groups.controllers == {"memory"} and not groups.counts_processes
    assert (base / "cgroup.subtree_control").read_text() == "+memory"
    b = groups.budget("7-40000-1", 64 << 20, 8)
    d = b.dirs[""]
    assert d.parent == base and (d / "memory.max").read_text() == str(64 << 20)
    assert not (d / "pids.max").exists()
    figures = b.figures()
    assert figures["cgroup"] == "v2" and figures["memory_limit_mb"] == 64 and figures["pids_limit"] is None
    assert "forks_refused" not in figures


def test_memory_and_pids_are_both_used_when_delegated(tmp_path):
    mounts, own, base = v2_tree(tmp_path, "memory pids")
    groups = Cgroups.detect_v2(mounts, own)
    assert groups.controllers == {"memory", "pids"}
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"
    d = groups.budget("7-40000-2", 32 << 20, 16).dirs[""]
    assert (d / "pids.max").read_text() == "16" and (d / "memory.max").read_text() == str(32 << 20)


@pytest.mark.parametrize("controllers", ["", "cpu pids"])
def test_no_memory_controller_is_refused_with_the_reason(tmp_path, controllers):
    mounts, own, base = v2_tree(tmp_path, controllers)
    with pytest.raises(CgroupUnavailable, match=f"{base} has no memory controller .only: {controllers or 'none'}"):
        Cgroups.detect_v2(mounts, own)


def test_a_group_with_other_processes_is_refused(tmp_path):
    mounts, own, base = v2_tree(tmp_path, "memory pids", procs="1\n2\n")
    with pytest.raises(CgroupUnavailable, match="holds other processes"):
        Cgroups.detect_v2(mounts, own)
