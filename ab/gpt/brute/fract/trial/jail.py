"""The bubblewrap command for one jail, and a check that such a jail can start on this machine.

A jail is a bwrap process with its own mount, PID, network, IPC, UTS (and cgroup) namespaces, no
capabilities but those its trusted zygote needs to hand each model to an unprivileged uid and clean up
after it (ZYGOTE_CAPS; the model process has none), a cleared environment, and a filesystem
made of: the system dirs and the Python prefix read-only, the virtualenv read-only, the package source
folders (each `ab/` root, never the repo root around it) read-only, the data files the trial reads
read-only at /data, one private writable scratch at /scratch (a tmpfs of `scratch_mb`: its pages count in
the trial's memory cgroup and it can never fill a host disk) and a tmpfs /tmp. Nothing else of the
host exists inside: no new_lemur/, db/, out/, other trials, home folders or network. Every process in
it runs under the seccomp filter of seccomp.py (when libseccomp is there; `hardening()` says so once).
"""
from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import ab.gpt

from ..util.atomic import write_text
from .cgroup import Cgroups, CgroupUnavailable
from .protocol import handler_module
from .gpus import Gpu, dev_listing, device_nodes
from .seccomp import SeccompUnavailable, program, program_fd

SCRATCH = "/scratch"
DATA = "/data"
# the zygote's: hand a model its own uid and folder, kill what it leaves, remove its files; the model
# process has none of them (a uid change from 0 clears every capability)
ZYGOTE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")
UID_BASE = 40000  # model processes run as UID_BASE + k: never root, never a real user


class JailError(OSError):
    """No jail can be started here, so no model code may run."""


@dataclass(frozen=True)
class JailConfig:
    scratch: Path  # host folder of the jail (the jail's own /scratch is a tmpfs of scratch_mb)
    scratch_mb: int = 1024  # size of the tmpfs /scratch: every file of every model of this jail, one at a time
    data: dict[str, str] = field(default_factory=dict)  # name -> host file, bound read-only at /data/<name>
    threads: int = 1
    uid: int = UID_BASE
    cuda: bool = False  # the GPU device nodes (every one, unless `gpu` names the jail's own)
    gpu: Gpu | None = None  # this jail's one GPU: only its node is bound, and the model sees it as cuda:0
    unsafe_no_jail: bool = False  # debugging only: run the worker as a plain subprocess
    harden: bool = True  # per-trial cgroups and the seccomp filter where the host has them (off: benchmarks only)
    preload: tuple[str, ...] = ()  # modules the zygote imports before it forks (the handlers of its trials)
    warm: tuple[str, ...] = ()  # handlers ("module:function") the zygote runs once with its scratch folder before
    # serving
    collapse_heap: bool = False  # back the zygote's heap with huge pages before serving: about 0.7 s once for
    # about 3 ms less per fork, so only for many short trials (a large generation run)

    def serving(self, handler: str) -> "JailConfig":
        """This configuration with the module of `handler` among the zygote's imports."""
        module = handler_module(handler)
        return self if module in self.preload else replace(self, preload=self.preload + (module,))

    def data_paths(self) -> dict[str, str]:
        """What the trial sees: the jail's paths of the data files (the host paths without a jail)."""
        if self.unsafe_no_jail:
            return dict(self.data)
        return {k: f"{DATA}/{Path(v).name}" for k, v in self.data.items()}

    @property
    def uses_cuda(self) -> bool:
        return self.cuda or self.gpu is not None


def cuda_library_dirs() -> list[str]:
    """The driver's LD_LIBRARY_PATH folders (CUDA images often find libcuda there, not in ld.so.cache)."""
    return [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d and os.path.isdir(d)]


DRIVER_LIBRARIES = ("libcuda.so.1", "libnvidia-ml.so.1")


@functools.lru_cache(maxsize=None)
def driver_library_dirs(ldconfig_listing: str | None = None) -> tuple[str, ...]:
    """Folders of the GPU driver's libraries as ld.so.cache names them, and the folders their links point
    into (a driver mounted at /usr/local/nvidia is often reached through links in /usr/lib)."""
    if ldconfig_listing is None:
        try:
            ldconfig_listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ()
    dirs: list[str] = []
    for line in ldconfig_listing.splitlines():
        name, _, path = line.strip().partition(" => ")
        if name.split(" ", 1)[0] in DRIVER_LIBRARIES and path:
            for d in (os.path.dirname(path), os.path.dirname(os.path.realpath(path))):
                if d and d not in dirs:
                    dirs.append(d)
    return tuple(dirs)


def source_roots() -> list[str]:
    """Folders holding the `ab` package trees (PYTHONPATH entries), outside the virtualenv."""
    venv = Path(sys.prefix).resolve()
    roots = []
    for p in ab.__path__:
        p = Path(p).resolve()
        if venv not in p.parents and str(p.parent) not in roots:
            roots.append(str(p.parent))
    return roots


def _ab_dirs() -> list[str]:
    """The `ab` folders outside the virtualenv, and where `ab.gpt` really lies (an `ab/gpt` symlink, as in a
    LEMUR root laid out like nn-dataset's checkout, points outside them)."""
    venv = Path(sys.prefix).resolve()
    dirs: list[Path] = []
    for p in list(ab.__path__) + list(ab.gpt.__path__):
        r = Path(p).resolve()
        if venv not in r.parents and not any(r == d or d in r.parents for d in dirs):
            dirs.append(r)
    return [str(d) for d in dirs]


def environment(cfg: JailConfig) -> dict[str, str]:
    """The whole environment of the jailed worker (bwrap --clearenv; nothing of the driver's)."""
    threads = str(max(1, cfg.threads))
    scratch = str(cfg.scratch) if cfg.unsafe_no_jail else SCRATCH
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(source_roots()), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1", "HOME": scratch, "TMPDIR": scratch, "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads, "LANG": "C.UTF-8", "USER": "model", "LOGNAME": "model",
            # glibc's heap in transparent huge pages: torch's ~250 MB of import-time heap then takes a
            # fraction of the page-table entries, which every fork of the zygote copies and every model
            # process's exit tears down (about 6 ms less per model; the kernel splits a huge page a child
            # writes to, so copy-on-write stays per small page)
            "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", **_cuda_environment(cfg)}


def _cuda_environment(cfg: JailConfig) -> dict[str, str]:
    if not cfg.uses_cuda:
        return {}
    env = {"LD_LIBRARY_PATH": os.pathsep.join(cuda_library_dirs())} if cuda_library_dirs() else {}
    if cfg.gpu is not None:  # without one (a Ray node's jail) every GPU is seen and the trial names its own
        env["CUDA_VISIBLE_DEVICES"] = cfg.gpu.visible_devices
    return env


def identity_files(cfg: JailConfig) -> list[tuple[str, str]]:
    """(host file, jail path) of the jail's own /etc/passwd and /etc/group: the zygote's uid and the model
    uid alone, so that a library asking who runs it (getpwuid, as some do at import time) gets an answer
    and the host's user list stays outside."""
    d = Path(cfg.scratch) / ".identity"
    d.mkdir(parents=True, exist_ok=True)
    uid, gid = os.getuid(), os.getgid()
    users = {uid: ("root" if uid == 0 else "driver", gid), cfg.uid: ("model", cfg.uid)}
    files = {"passwd": "".join(f"{n}:x:{u}:{g}::{SCRATCH}:/bin/false\n" for u, (n, g) in users.items()),
             "group": "".join(f"{n}:x:{g}:\n" for n, g in dict(users.values()).items())}
    for name, text in files.items():
        write_text(d / name, text, durable=False)
        (d / name).chmod(0o644)  # read by the model uid
    return [(str(d / name), f"/etc/{name}") for name in files]


def worker_argv(cfg: JailConfig, control_fd: int = 3) -> list[str]:
    scratch = str(cfg.scratch) if cfg.unsafe_no_jail else SCRATCH
    return [sys.executable, "-m", "ab.gpt.brute.fract.trial.worker", "--scratch", scratch, "--uid", str(cfg.uid),
            "--control-fd", str(control_fd)] + (["--no-jail"] if cfg.unsafe_no_jail else []) + \
        [a for m in cfg.preload for a in ("--preload", m)] + [a for h in cfg.warm for a in ("--warm", h)] + \
        (["--collapse-heap"] if cfg.collapse_heap else [])


def bwrap_command(cfg: JailConfig, bwrap: str = "bwrap", control_fd: int = 3, seccomp_fd: int | None = None
                  ) -> list[str]:
    """The full command line: bwrap with its options, then the worker."""
    cmd = [bwrap] + (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])
    cmd += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "jail", "--cap-drop", "ALL"]
    for cap in ZYGOTE_CAPS:
        cmd += ["--cap-add", cap]
    cmd += ["--clearenv"]
    for k, v in environment(cfg).items():
        cmd += ["--setenv", k, v]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    cmd += ["--perms", "0755", "--dir", "/etc"]  # the model uid reads what is bound there (bwrap would make it 0700)
    for f in SYSTEM_FILES:
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    # /proc, /dev and the tmpfs /tmp first: binds below may lie under /tmp (a checkout or venv there) and must
    # be mounted on top of the tmpfs, not hidden by it
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    made: set[str] = set()

    def bind(kind: str, src: str, dest: str) -> None:
        # bwrap would create missing parents as 0700, closed to the model uid: make them 0755 first
        for parent in reversed(Path(dest).parents):
            p = str(parent)
            if p != "/" and p not in made and not any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS):
                made.add(p)
                cmd.extend(["--perms", "0755", "--dir", p])
        cmd.extend([kind, src, dest])

    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix).absolute(), Path(sys.prefix).resolve()}
    prefixes.add(Path(os.path.realpath(sys.executable)).parent.parent)
    for p in sorted(prefixes):
        bind("--ro-bind", str(p), str(p))
    for d in _ab_dirs():
        bind("--ro-bind", d, d)
    for host, dest in identity_files(cfg):
        cmd += ["--ro-bind", host, dest]
    cmd += ["--size", str(int(cfg.scratch_mb) << 20), "--tmpfs", SCRATCH]
    if cfg.uses_cuda:  # the GPU's device nodes, and /sys read-only for the CUDA driver's device discovery
        for name in device_nodes(cfg.gpu, dev_listing()):
            cmd += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
        cmd += ["--ro-bind", "/sys", "/sys"]
        for d in dict.fromkeys([*cuda_library_dirs(), *driver_library_dirs()]):
            if os.path.isdir(d) and not any(d == s or d.startswith(s + "/") for s in SYSTEM_DIRS):
                bind("--ro-bind", d, d)
    for name, host in cfg.data.items():
        bind("--ro-bind", str(Path(host).resolve()), f"{DATA}/{Path(host).name}")
    cmd += ["--chdir", SCRATCH, "--"]
    return cmd + worker_argv(cfg, control_fd)


def command(cfg: JailConfig, control_fd: int, seccomp_fd: int | None = None) -> list[str]:
    if cfg.unsafe_no_jail:
        return worker_argv(cfg, control_fd)
    return bwrap_command(cfg, require_bwrap(), control_fd, seccomp_fd)


@dataclass(frozen=True)
class Hardening:
    """What this host gives every jail beyond bwrap: per-trial cgroups, the seccomp filter (None: not
    available, with the reason in `notes`)."""

    cgroups: Cgroups | None
    seccomp: bool
    notes: tuple[str, ...]

    def record(self) -> dict:
        """What each trial's stats say about the budgets it ran under."""
        return {"cgroup": f"v{self.cgroups.version}" if self.cgroups else None,
                "cgroup_controllers": ",".join(sorted(self.cgroups.controllers)) if self.cgroups else None,
                "seccomp": self.seccomp,
                **({"fallback": "; ".join(self.notes)} if self.notes else {})}


NOT_HARDENED = Hardening(None, False, ("cgroups and seccomp switched off",))


@functools.lru_cache(maxsize=None)
def hardening() -> Hardening:
    """Detected once per driver; what is missing is said on stderr in one line each."""
    notes = []
    try:
        groups = Cgroups.detect()
    except (CgroupUnavailable, OSError) as e:
        groups = None
        notes.append(f"no per-trial cgroups ({e}): memory is limited per process (RLIMIT_AS) and processes per "
                     "uid (RLIMIT_NPROC) only")
    else:
        if not groups.counts_processes:
            notes.append(f"per-trial cgroups (v{groups.version}) count memory only (no pids controller here): "
                         "processes are limited per model uid (RLIMIT_NPROC)")
    try:
        program()
        filtered = True
    except (SeccompUnavailable, OSError) as e:
        filtered = False
        notes.append(f"no seccomp filter in the jails ({e})")
    for n in notes:
        print(f"jail: {n}", file=sys.stderr)
    return Hardening(groups, filtered, tuple(notes))


def seccomp_fd(cfg: JailConfig) -> int | None:
    """A descriptor of the filter program for one bwrap start, or None (no jail, or no libseccomp)."""
    return None if cfg.unsafe_no_jail or not cfg.harden or not hardening().seccomp else program_fd()


def require_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise JailError("bubblewrap (bwrap) is not installed, so model code cannot be jailed: install it "
                        "(apt-get install bubblewrap, or make system-deps); refusing to run model code")
    _probe(path)
    return path


@functools.lru_cache(maxsize=None)
def _probe(bwrap: str) -> None:
    """Start one empty jail (same namespaces and capabilities); raise JailError with bwrap's reason."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jail-probe-") as tmp:
        fd = seccomp_fd(JailConfig(scratch=Path(tmp)))
        try:
            cmd = bwrap_command(JailConfig(scratch=Path(tmp)), bwrap, seccomp_fd=fd)
            cmd = cmd[:cmd.index("--") + 1] + ["/usr/bin/true"]
            _run_probe(cmd, () if fd is None else (fd,))
        finally:
            if fd is not None:
                os.close(fd)


def _run_probe(cmd: list[str], fds: tuple[int, ...] = ()) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
                              pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JailError(f"bubblewrap cannot start a jail ({e}); refusing to run model code "
                        f"(--unsafe-no-jail exists for debugging only)") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
        raise JailError(f"bubblewrap cannot start a jail ({why}); refusing to run model code "
                        f"(--unsafe-no-jail exists for debugging only)")


def model_uid(slot: int) -> int:
    """A uid for the models of one jail: distinct per driver process and slot, so one jail's process-count
    limit and clean-up never touch another's; never one the host has assigned (no passwd entry)."""
    uid = UID_BASE + (os.getpid() % 1500) * 16 + slot % 16
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return uid
    raise JailError(f"uid {uid} belongs to a host user ({pwd.getpwuid(uid).pw_name}); model uids must be unassigned")
