"""Worker process of `sandbox.Sandbox`: imports torch, sets its limits, then serves calls from stdin.

Protocol: one JSON request per line on stdin, {"func": "ab.gpt.module:function", "kwargs": {...}}; one
JSON reply per line on the original stdout, {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
Anything the called code prints goes to stderr, so it cannot corrupt the protocol.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path

_BLOCKED_EVENTS = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "webbrowser.", "ftplib.",
                   "http.client.", "urllib.Request", "smtplib.", "telnetlib.", "ctypes.")
# modules that write files or reach the OS from native code, out of the audit hook's sight: not loadable
# once the worker serves calls (modules loaded during warm-up stay usable)
_BLOCKED_IMPORTS = ("tensorboard", "tensorflow", "torch.utils.tensorboard", "ctypes", "_ctypes", "mmap",
                    "_posixsubprocess", "multiprocessing", "_multiprocessing", "onnx", "onnxscript")
_PATH_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "shutil.move",
                "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _install_audit_hook(run_dir: Path) -> None:
    root = str(run_dir.resolve())

    def inside(path: object) -> bool:
        if isinstance(path, int):  # fd-relative: already-open files only
            return True
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return p == root or p.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and isinstance(args[0], str) and \
                any(args[0] == m or args[0].startswith(m + ".") for m in _BLOCKED_IMPORTS):
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed")
        elif event in _PATH_EVENTS:
            for a in args[:2]:
                if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                    raise PermissionError(f"sandbox: {event} on {a!r} is not allowed")

    sys.addaudithook(hook)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _warm_up(run_dir: Path) -> None:
    """Validate one small rendered model in both modes, so torch's lazy imports happen now."""
    import tempfile

    from ab.gpt.brute.fract.fractal_template import render
    from ab.gpt.brute.fract.space.registry import build_registry
    from ab.gpt.brute.fract.space.spec import ArchSpec
    from ab.gpt.brute.fract.validate import check_model_file

    spec = ArchSpec(depth=1, columns=2, channels=(4,), layers=("conv3x3", "bn", "relu", "dropout"),
                    dropout=0.1)
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        path = Path(tmp) / "warm_up.py"
        path.write_text(render(spec, build_registry(third_party=False)))
        for mode in ("meta", "real"):
            check_model_file(str(path), mode=mode)


def _call(func: str, kwargs: dict, cpu_s: int) -> object:
    if not func.startswith("ab.gpt.") or ":" not in func:
        raise PermissionError(f"sandbox: {func!r} is not callable here")
    mod_name, fn_name = func.split(":", 1)
    fn = getattr(importlib.import_module(mod_name), fn_name)
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = spent + cpu_s if hard == resource.RLIM_INFINITY else min(spent + cpu_s, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))  # SIGXCPU once this call has used cpu_s
    return fn(**kwargs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--memory-gb", type=float, default=8.0)
    ap.add_argument("--cpu-s", type=int, default=600)
    ap.add_argument("--file-size-mb", type=int, default=1024)
    args = ap.parse_args()

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints of the called code go to stderr
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead

    run_dir = Path(args.run_dir)
    _warm_up(run_dir)  # torch imports lazily (and makes temp dirs): do that before the limits
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size_mb << 20,) * 2)
    limit = _vm_size_bytes() + int(args.memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _install_audit_hook(run_dir)

    proto.write("ready\n")
    for line in sys.stdin:
        try:
            req = json.loads(line)
            result = _call(req["func"], req.get("kwargs", {}), args.cpu_s)
            reply = {"ok": True, "result": result}
        except MemoryError:
            reply = {"ok": False, "error": "out of memory (sandbox memory limit)"}
        except BaseException as e:  # noqa: BLE001 - every failure becomes a reply
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"{type(e).__name__}: {e}".strip()
            if "out of memory" in msg.lower() or "can't allocate memory" in msg.lower():
                msg = "out of memory (sandbox memory limit): " + msg
            tb = traceback.format_exc(limit=-3)
            reply = {"ok": False, "error": msg.splitlines()[0] if msg else type(e).__name__, "traceback": tb}
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as e:
            text = json.dumps({"ok": False, "error": f"result is not JSON-serialisable: {e}"})
        proto.write(text + "\n")


if __name__ == "__main__":
    main()
