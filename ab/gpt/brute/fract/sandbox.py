"""Run functions on untrusted model code in worker subprocesses with limits.

A `Sandbox` keeps a few long-lived workers (`python -m ab.gpt.brute.fract.sandbox_worker`), each of which
imports torch once and then serves calls, one at a time, over a pipe as JSON lines. Every call has a
wall-clock limit (the worker is killed and replaced when it runs over); each worker has an address-space
budget above its baseline, a per-call CPU-time limit, a file-size limit, and an audit hook that refuses
sockets, subprocesses and file writes outside its run directory. Only functions inside `ab.gpt.` can be
called. The main process never imports the code it checks.
"""
from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED_PREFIX = "ab.gpt."


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 120.0  # wall clock per call
    cpu_s: int = 600  # CPU seconds per call
    memory_gb: float = 8.0  # address space beyond the worker's baseline (torch imported)
    file_size_mb: int = 1024


class SandboxError(RuntimeError):
    """A call that did not return a result: timeout, crash, or refused."""


def _repo_paths() -> str:
    """PYTHONPATH that lets the worker import this very copy of the package (source tree or installed)."""
    import ab

    roots = [str(Path(p).parent) for p in ab.__path__]
    old = os.environ.get("PYTHONPATH")
    return os.pathsep.join(roots + ([old] if old else []))


class _Worker:
    def __init__(self, limits: Limits, run_dir: Path, env: dict[str, str]) -> None:
        self.limits = limits
        cmd = [sys.executable, "-m", "ab.gpt.brute.fract.sandbox_worker",
               "--run-dir", str(run_dir), "--memory-gb", str(limits.memory_gb),
               "--cpu-s", str(limits.cpu_s), "--file-size-mb", str(limits.file_size_mb)]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     cwd=run_dir, env=env, start_new_session=True)
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while not buf.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            r, _, _ = select.select([fd], [], [], remaining)
            if not r:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return buf or b""
            buf += chunk
        return buf

    def stderr_tail(self, n: int = 800) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - n))
        return self.stderr.read().decode(errors="replace").strip()

    def call(self, func: str, kwargs: dict[str, Any], timeout: float) -> dict:
        assert self.proc.stdin is not None
        if not self.ready:  # the first line is the worker saying it has imported torch
            line = self._readline(time.monotonic() + 300)
            if not line:
                raise SandboxError(f"worker failed to start: {self.stderr_tail()}")
            self.ready = True
        try:
            self.proc.stdin.write((json.dumps({"func": func, "kwargs": kwargs}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise SandboxError(f"worker died: {self.stderr_tail()}") from None
        line = self._readline(time.monotonic() + timeout)
        if line is None:
            self.kill()
            raise SandboxError(f"timed out after {timeout:g} s")
        if not line:
            code = self.proc.wait()
            tail = self.stderr_tail()
            reason = _describe_exit(code)
            raise SandboxError(f"worker {reason}" + (f": {tail.splitlines()[-1]}" if tail else ""))
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.stderr.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                pass
        self.kill()


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        name = signal.Signals(-code).name
        hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed, e.g. out of memory)",
                "SIGXFSZ": " (file size limit)", "SIGSEGV": " (crash)"}.get(name, "")
        return f"died with {name}{hint}"
    return f"exited with code {code}"


class Sandbox:
    """A pool of sandboxed workers. `submit(func, **kwargs)` returns a Future of the function's result.

    `func` is "module:function" inside ab.gpt. The result is the function's JSON-serialisable return
    value; an exception in it, a timeout or a crash sets the Future's exception (SandboxError).
    """

    def __init__(self, workers: int = 2, limits: Limits = Limits(), run_dir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.limits = limits
        self._tmp = None
        if run_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fractal-sandbox-")
            run_dir = Path(self._tmp.name)
        self.run_dir = Path(run_dir).absolute()  # workers run with cwd=run_dir: a relative path would break
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = _repo_paths()
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.env["TMPDIR"] = str(self.run_dir)
        self.env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, workers))))
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        worker: _Worker | None = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            fut, func, kwargs, timeout = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                if worker is None or worker.proc.poll() is not None:
                    worker = _Worker(self.limits, self.run_dir, self.env)
                reply = worker.call(func, kwargs, timeout)
            except SandboxError as e:
                if worker is not None and worker.proc.poll() is not None:
                    worker.kill()
                    worker = None
                fut.set_exception(e)
                continue
            except Exception as e:  # noqa: BLE001 - report anything to the caller
                fut.set_exception(SandboxError(f"{type(e).__name__}: {e}"))
                continue
            if reply.get("ok"):
                fut.set_result(reply.get("result"))
            else:
                fut.set_exception(SandboxError(reply.get("error", "unknown error")))
        if worker is not None:
            worker.close()

    def submit(self, func: str, timeout: float | None = None, **kwargs: Any) -> Future:
        if not func.startswith(ALLOWED_PREFIX) or ":" not in func:
            raise ValueError(f"sandbox calls must name 'module:function' inside {ALLOWED_PREFIX}, not {func!r}")
        fut: Future = Future()
        self._queue.put((fut, func, kwargs, timeout or self.limits.timeout_s))
        return fut

    def call(self, func: str, timeout: float | None = None, **kwargs: Any) -> Any:
        return self.submit(func, timeout=timeout, **kwargs).result()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=30)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
