"""Per-trial cgroup budgets, made and removed by the driver: memory and process count for everything a
model's process tree can hold (anonymous memory, SysV/POSIX shared memory, memfd, tmpfs files and the page
cache it dirties; every forked child).

`Cgroups.detect()` finds where this process may create child groups: cgroup v1 with a writable `memory`
hierarchy (and `pids` where mounted), or a v2 group with the `memory` controller (and `pids` where delegated;
when the driver's own v2 group holds only the driver, the driver moves itself into a leaf below it so the
controllers can be enabled for siblings). Without `pids` the process count stays limited per model uid
(RLIMIT_NPROC, one uid per jail). `Cgroups.budget(name, memory, pids)` creates one trial's group(s) with the limits set and opens
their `cgroup.procs` files: the jail's forked model process writes "0" to each before it drops its uid
(the kernel checks the opener's credentials, the driver's), so the whole model tree is inside from its
first instruction. `Budget.close()` kills what is left and removes the group; `Budget.figures()` reads the
peak and the limit events.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "fractal-trial"


class CgroupUnavailable(OSError):
    """No per-trial cgroup can be made here (the reason is the message)."""


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fstype, super options) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, rfields = left.split(), right.split()
            if rfields[0] in ("cgroup", "cgroup2"):
                found.append((fields[4], fields[3], rfields[0], set(rfields[2].split(","))))
    return found


def _own_groups() -> dict[str, str]:
    """controller (or '' for v2) -> this process's group path, from /proc/self/cgroup."""
    groups = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                groups[c] = path
    return groups


def _inside(mount: str, root: str, path: str) -> Path:
    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    if rel.startswith(".."):
        raise CgroupUnavailable(f"this process's group {path} lies outside the mounted part ({root})")
    return Path(mount) / (rel if rel != "." else "")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


@dataclass
class Budget:
    """One trial's group(s): `dirs` maps controller ('memory', 'pids', or '' for v2) to its folder."""

    version: int
    dirs: dict[str, Path]
    memory: int | None
    pids: int | None  # None: no pids controller (or no limit)
    fds: list[int]

    def _dir(self, ctrl: str) -> Path | None:
        return self.dirs.get("" if self.version == 2 else ctrl)

    def figures(self) -> dict:
        """What the kernel counted: peak memory, OOM kills, forks refused at the process limit."""
        m, p = self._dir("memory"), self._dir("pids")
        if self.version == 1:
            peak = _int(_read(m / "memory.max_usage_in_bytes"))
            oom = _keyed(_read(m / "memory.oom_control")).get("oom_kill", 0)
            hit = _int(_read(m / "memory.failcnt")) or 0
        else:
            peak = _int(_read(m / "memory.peak"))
            ev = _keyed(_read(m / "memory.events"))
            oom, hit = ev.get("oom_kill", 0), ev.get("max", 0)
        out = {"cgroup": f"v{self.version}",
               "memory_limit_mb": None if self.memory is None else round(self.memory / 2**20),
               "memory_peak_mb": None if peak is None else round(peak / 2**20, 1),
               "memory_limit_hits": hit, "oom_kills": oom, "pids_limit": self.pids}
        if self.pids is not None:
            out.update(pids_peak=_int(_read(p / "pids.peak")), forks_refused=_keyed(_read(p / "pids.events")).get("max", 0))
        return out

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def close(self) -> None:
        """Kill whatever is still inside, then remove the group(s)."""
        self.close_fds()
        for d in set(self.dirs.values()):
            if self.version == 2 and (d / "cgroup.kill").exists():
                try:
                    _write(d / "cgroup.kill", "1")
                except OSError:
                    pass
            for _ in range(500):
                pids = [int(x) for x in _read(d / "cgroup.procs").split()]
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)


class Cgroups:
    """Where this driver makes its trials' groups."""

    def __init__(self, version: int, parents: dict[str, Path], controllers: frozenset[str] = frozenset({"memory", "pids"})
                 ) -> None:
        self.version, self.parents, self.controllers = version, parents, controllers

    @property
    def counts_processes(self) -> bool:
        return "pids" in self.controllers

    @classmethod
    def detect(cls) -> "Cgroups":
        """The v1 memory (and pids) hierarchies if mounted and writable, else a v2 group with the memory (and
        pids) controller; raises CgroupUnavailable with the reason."""
        mounts, own = _mounts(), _own_groups()
        v1 = {}
        for point, root, fstype, opts in mounts:
            for ctrl in ("memory", "pids"):
                if fstype == "cgroup" and ctrl in opts and ctrl in own:
                    v1[ctrl] = _inside(point, root, own[ctrl])
        if "memory" in v1:
            cls._try_create(v1)
            return cls(1, v1, frozenset(v1))
        return cls.detect_v2(mounts, own)

    @classmethod
    def detect_v2(cls, mounts=None, own=None) -> "Cgroups":
        """A v2 group of this process with memory (and pids, where delegated); raises CgroupUnavailable."""
        mounts, own = mounts or _mounts(), own or _own_groups()
        v2 = [(point, root) for point, root, fstype, _ in mounts if fstype == "cgroup2"]
        if not v2 or "" not in own:
            raise CgroupUnavailable("no cgroup v1 memory hierarchy and no cgroup v2 mount")
        base = _inside(v2[0][0], v2[0][1], own[""])
        if base.name == f"{PREFIX}-driver-{os.getpid()}":  # moved there by an earlier detection in this process
            base = base.parent
        have = set(_read(base / "cgroup.controllers").split())
        if "memory" not in have:
            raise CgroupUnavailable(f"the cgroup v2 group {base} has no memory controller "
                                    f"(only: {' '.join(sorted(have)) or 'none'}); delegate one, e.g. "
                                    "systemd-run --scope -p Delegate=yes")
        controllers = frozenset({"memory", "pids"} & have)
        cls._enable_v2(base, controllers)
        cls._try_create({"": base})
        return cls(2, {"": base}, controllers)

    @staticmethod
    def _enable_v2(base: Path, controllers: frozenset[str]) -> None:
        if controllers <= set(_read(base / "cgroup.subtree_control").split()):
            return
        procs = _read(base / "cgroup.procs").split()
        if procs and procs != [str(os.getpid())]:
            raise CgroupUnavailable(f"the cgroup v2 group {base} holds other processes, so its controllers cannot "
                                    "be enabled for child groups; start the driver in a delegated group of its own")
        if procs:  # only the driver: it moves into a leaf so its group may hand controllers to children
            leaf = base / f"{PREFIX}-driver-{os.getpid()}"
            try:
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", "0")
            except OSError as e:
                raise CgroupUnavailable(f"cannot move the driver into {leaf} ({e.strerror})") from None
        try:
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(controllers)))
        except OSError as e:
            raise CgroupUnavailable(f"cannot enable {' and '.join(sorted(controllers))} in {base} ({e.strerror})") from None

    @staticmethod
    def _try_create(parents: dict[str, Path]) -> None:
        """Remove the groups of drivers that are gone (killed before they could), then try to make one."""
        for parent in parents.values():
            for old in parent.glob(f"{PREFIX}-*"):
                pid = old.name[len(PREFIX) + 1:].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    Budget(1, {"": old}, None, None, []).close()
            probe = parent / f"{PREFIX}-probe-{os.getpid()}"
            try:
                probe.mkdir()
                probe.rmdir()
            except OSError as e:
                raise CgroupUnavailable(f"cannot create a group under {parent} ({e.strerror})") from None

    def budget(self, name: str, memory: int | None, pids: int | None) -> Budget:
        """A new group per controller hierarchy, limits set, cgroup.procs opened for writing."""
        dirs = {ctrl: parent / f"{PREFIX}-{name}" for ctrl, parent in self.parents.items()}
        b = Budget(self.version, dirs, memory, pids if self.counts_processes else None, [])
        try:
            for d in dirs.values():
                if d.exists():  # a killed driver's leftover with the same name
                    Budget(1, {"": d}, None, None, []).close()
                d.mkdir()
            m, p = b._dir("memory"), b._dir("pids")
            if self.version == 1:
                if memory is not None:
                    _write(m / "memory.limit_in_bytes", str(memory))
                    if (m / "memory.memsw.limit_in_bytes").exists():  # swap does not extend the budget
                        _write(m / "memory.memsw.limit_in_bytes", str(memory))
            else:
                if memory is not None:
                    _write(m / "memory.max", str(memory))
                    if (m / "memory.swap.max").exists():
                        _write(m / "memory.swap.max", "0")
                if (m / "memory.oom.group").exists():  # an OOM kill ends the whole model tree
                    _write(m / "memory.oom.group", "1")
            if b.pids is not None:
                _write(p / "pids.max", str(b.pids))
            b.fds = [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in dirs.values()]
        except OSError:
            b.close()
            raise
        return b


def join(fds: list[int]) -> None:
    """In the forked model process, before anything else: move this process into each trial group."""
    for fd in fds:
        os.write(fd, b"0")
        os.close(fd)
