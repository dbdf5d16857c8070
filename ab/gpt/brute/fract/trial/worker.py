"""The process inside a jail: a zygote that imports torch once, then runs each model in a fresh fork.

Started by the driver as `python -m ab.gpt.brute.fract.trial.worker` (inside bwrap, see jail.py) with a
control socket on fd 3. It makes itself non-dumpable (no ptrace, no /proc/<zygote>/fd for anyone
without privileges), imports torch and the trial code, says "ready", then serves one request at a time:
the driver sends the write end of a fresh pipe (the trial's own channel) and a "run" frame (task, config,
limits, and the job's handler "package.module:function", named by the driver; payloads: the model code and an
optional resume state). The zygote imports its handlers' modules (`--preload`) and runs the driver's warm-up
handlers (`--warm`) before it forks; it imports nothing above trial/ by name. For each request the zygote:

1. creates /scratch/t<k> owned by the model uid, and forks;
2. the child moves itself into the trial's cgroups (the driver made them and sent their cgroup.procs
   descriptors with the request), closes every descriptor but stdio and its channel, sets its rlimits (CPU,
   address space, file size, process count, no POSIX message queues, no core), drops to the model uid
   (losing every capability), writes the code to its folder and runs the task, sending its events on the
   channel (protocol.py);
3. when the child has exited, the zygote kills every other process of the jail's PID namespace (detached
   grandchildren included; kill(-1) reaches all but bwrap's init and itself), removes every SysV shared
   memory segment, semaphore set and message queue of the jail's IPC namespace (as the model uid, their
   creator) and the folder, counting what the model left there;
4. the zygote reports the child's exit (code or signal) and those counts on the control socket.

With `--no-jail` (the driver's --unsafe-no-jail, debugging only) there is no uid switch: the child leads
a process group, which the clean-up kills.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import os
import resource
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from .cgroup import join
from .protocol import TRAIN_HANDLER, FrameReader, handler_module, write_frame

PR_SET_DUMPABLE = 4
MADV_COLLAPSE = 25  # Linux >= 6.1
HUGE_PAGE = 2 << 20
MAX_REQUEST = 2 << 30
IPC_RMID = 0


def _nondumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _import_all(modules: list[str]) -> None:
    """Import what every task needs (no compute threads start, so forking afterwards is safe): torch, the
    trial runner and the modules of the handlers this jail serves."""
    import numpy  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (every optimizer's constructor imports it: ~0.7 s per trial otherwise)

    for module in [handler_module(TRAIN_HANDLER), *modules]:
        importlib.import_module(module)


def _handler(name: str):
    """The function a handler name "package.module:function" (checked: under this project) names."""
    return getattr(importlib.import_module(handler_module(name)), name.partition(":")[2])


def _collapse_heap() -> int:
    """Back the zygote's anonymous writable memory (torch's and Python's import-time heaps, ~340 MB) with
    transparent huge pages now (MADV_COLLAPSE: the same bytes, other pages): each fork then copies one
    page-table entry per 2 MB instead of 512, and each model process's exit tears down as few. A child
    that writes to such a page gets a private 4 kB copy as before (the kernel splits the mapping).
    Returns the bytes collapsed; a kernel without MADV_COLLAPSE leaves everything as it was."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f]
    for r in regions:
        anonymous = len(r) < 6 or r[5] == "[heap]"
        if not (r[1] == "rw-p" and anonymous):
            continue
        lo, hi = (int(x, 16) for x in r[0].split("-"))
        lo, hi = -(-lo // HUGE_PAGE) * HUGE_PAGE, hi // HUGE_PAGE * HUGE_PAGE
        if hi > lo and libc.madvise(lo, hi - lo, MADV_COLLAPSE) == 0:
            done += hi - lo
    return done


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _set_limits(lim: dict, jail: bool) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = int(lim.get("file_mb", 1024)) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    cpu = int(lim.get("cpu_s", 3600))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if lim.get("memory_gb") is not None:
        limit = _vm_size() + int(float(lim["memory_gb"]) * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))  # no POSIX message queue can be made
    if jail:  # counted per uid: only this jail's model processes have it
        n = int(lim.get("nproc", 256))
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _child(channel: int, groups: list[int], header: dict, payloads: list[bytes], rundir: Path, uid: int,
           jail: bool) -> int:
    try:
        join(groups)  # first of all: everything from here on is charged to the trial's budget
    except OSError as e:
        write_frame(channel, {"type": "error", "message": f"could not join the trial's cgroup ({e})", "oom": False})
        return 1
    _close_fds({0, 1, 2, channel})
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if not jail:
        os.setpgid(0, 0)
    _set_limits(header.get("limits", {}), jail)
    if jail:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from here on: no capabilities, the model uid's own files only
    os.chdir(rundir)
    os.environ["HOME"] = os.environ["TMPDIR"] = str(rundir)
    import tempfile

    tempfile.tempdir = str(rundir)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead
    code, resume = payloads[0], payloads[1]
    path = rundir / "model.py"
    path.write_bytes(code)
    task, config = header["task"], header["config"]
    try:
        fn = _handler(header["handler"])
        if task == "train":
            fn(str(path), config, resume or None, channel)
        else:
            write_frame(channel, {"type": "result", "value": fn(str(path), config)})
    except BaseException as e:  # noqa: BLE001 - every failure is a message
        msg = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0][:500]
        oom = isinstance(e, MemoryError) or any(s in msg.lower() for s in (
            "out of memory", "can't allocate memory", "cannot allocate memory"))
        traceback.print_exc(limit=-3)
        try:
            write_frame(channel, {"type": "error", "message": msg, "oom": oom})
        except OSError:
            pass
        return 1
    return 0


def _usage(rundir: Path) -> tuple[int, int]:
    """(bytes, files) the model left in its folder."""
    size = files = 0
    for root, dirs, names in os.walk(rundir):
        for n in names + dirs:
            files += 1
            try:
                size += os.lstat(os.path.join(root, n)).st_blocks * 512
            except OSError:
                pass
    return size, files


def _ipc_objects() -> list[tuple[str, int]]:
    """(kind, id) of every SysV IPC object in this IPC namespace."""
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                found += [(kind, int(line.split()[1])) for line in list(f)[1:] if line.strip()]
        except OSError:
            pass
    return found


def _remove_ipc(uid: int) -> int:
    """Remove every SysV IPC object (the model's: the zygote makes none), as the model uid, their creator."""
    objs = _ipc_objects()
    if not objs:
        return 0
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            libc = ctypes.CDLL(None, use_errno=True)
            for kind, ident in objs:
                if kind == "shm":
                    libc.shmctl(ident, IPC_RMID, None)
                elif kind == "sem":
                    libc.semctl(ident, 0, IPC_RMID)
                else:
                    libc.msgctl(ident, IPC_RMID, None)
            rc = 0
        finally:
            os._exit(rc)
    os.waitpid(pid, 0)
    left = _ipc_objects()
    if left:  # a segment the model uid did not create cannot be there: nothing else runs in this namespace
        raise RuntimeError(f"SysV IPC objects left after the model: {left[:5]}")
    return len(objs)


def _clean_up(rundir: Path, jail: bool, child: int, uid: int) -> dict:
    """Kill whatever the model left running (detached grandchildren included), remove its IPC objects and its
    folder; what it left there."""
    if not jail:
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
        size, files = _usage(rundir)
        shutil.rmtree(rundir, ignore_errors=True)
        return {"scratch_bytes": size, "scratch_files": files, "ipc_removed": 0}
    # in the jail's PID namespace every process but bwrap's init and this zygote is the model's:
    # kill(-1) reaches exactly those (CAP_KILL), until none is left (ESRCH)
    for _ in range(5000):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.001)  # killed ones are zombies until bwrap's init reaps them
    for root, dirs, _files in os.walk(rundir):  # a model may have made its folders unreadable
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), 0o700, follow_symlinks=False)
            except OSError:
                pass
    size, files = _usage(rundir)
    shutil.rmtree(rundir, ignore_errors=True)
    return {"scratch_bytes": size, "scratch_files": files, "ipc_removed": _remove_ipc(uid)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--control-fd", type=int, default=3)
    ap.add_argument("--no-jail", action="store_true")
    ap.add_argument("--preload", action="append", default=[], help="module to import before forking (repeatable)")
    ap.add_argument("--warm", action="append", default=[],
                    help="handler 'module:function' to run with the scratch folder before serving (repeatable)")
    ap.add_argument("--collapse-heap", action="store_true", help="back the heap with huge pages before serving")
    args = ap.parse_args()
    jail = not args.no_jail
    _nondumpable()
    ctl = socket.socket(fileno=args.control_fd)
    os.dup2(2, 1)  # prints go to stderr; the protocol has its own descriptors
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    scratch = Path(args.scratch)
    if jail:
        os.chmod(scratch, 0o711)  # the model uid may pass through to its own folder, not list it
    gc.disable()  # imports make little garbage; the collections they would trigger cost ~0.3 s per jail
    _import_all(args.preload)
    gc.enable()
    for name in args.warm:  # generation: thousands of validations of ~50 ms each, where forks must be cheap
        _handler(name)(scratch)
    if args.warm:
        gc.collect()  # what the warm-ups left
    reader = FrameReader(ctl.fileno(), MAX_REQUEST)
    gc.freeze()  # forked children do not touch (and copy) the zygote's objects when they collect
    if args.collapse_heap:  # 0.7 s here against ~3 ms saved per fork: only for many short trials
        _collapse_heap()
    write_frame(ctl.fileno(), {"type": "ready"})
    for k in range(1, 1 << 62):
        msg, fds, _flags, _addr = socket.recv_fds(ctl, 1, 4)
        if not msg or not fds:
            break
        channel, groups = fds[0], fds[1:]
        frame = reader.read()
        if frame is None:
            break
        header, payloads = frame
        rundir = scratch / f"t{k}"
        shutil.rmtree(rundir, ignore_errors=True)
        os.mkdir(rundir, 0o700)
        if jail:
            os.chown(rundir, args.uid, args.uid)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            rc = 1
            try:
                ctl.close()
                rc = _child(channel, groups, header, payloads, rundir, args.uid, jail)
            finally:
                sys.stderr.flush()
                os._exit(rc)
        for fd in [channel, *groups]:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        left = _clean_up(rundir, jail, pid, args.uid)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        write_frame(ctl.fileno(), {"type": "exit", "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                                   "signal": signal.Signals(sig).name if sig else None, **left})


if __name__ == "__main__":
    main()
