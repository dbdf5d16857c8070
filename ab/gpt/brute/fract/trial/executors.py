"""Where trials run: N local jails, or one Ray task per trial (jailed on its node; ray_executor.py).

`submit(trial, on_event)` returns a concurrent Future of a `TrialResult`; `on_event(kind, data)` sees a
train trial's progress and epochs as they arrive (called from a worker thread). The local executor never
holds more trials than it has jails: each slot takes the next trial only when it is free, and `free()`
tells a caller whether a submission would start at once (the sweep submits only then, so no trial
waits in a queue).
"""
from __future__ import annotations

import queue
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from .jail import JailConfig, JailError, model_uid, require_bwrap
from .session import Jail, Trial, TrialLimits, TrialResult


class LocalExecutor:
    def __init__(self, workers: int, limits: TrialLimits, scratch: Path | None = None,
                 data: dict[str, str] | None = None, threads: int = 1, cuda: bool = False,
                 unsafe_no_jail: bool = False, warm: tuple[str, ...] = (), harden: bool = True) -> None:
        if not unsafe_no_jail:
            require_bwrap()  # one clear line now, before anything runs
        self.workers, self.limits = max(1, workers), limits
        self._tmp = tempfile.TemporaryDirectory(prefix="fractal-jails-") if scratch is None else None
        root = Path(self._tmp.name if self._tmp else scratch).absolute()
        self.configs = [JailConfig(scratch=root / f"jail{k}", scratch_mb=limits.disk_mb, data=dict(data or {}),
                                   threads=threads, uid=model_uid(k), cuda=cuda, unsafe_no_jail=unsafe_no_jail,
                                   warm=warm, harden=harden)
                        for k in range(self.workers)]
        self._queue: queue.Queue = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._jails: list[Jail | None] = [None] * self.workers
        self._threads = [threading.Thread(target=self._serve, args=(k,), daemon=True) for k in range(self.workers)]
        for t in self._threads:
            t.start()

    def free(self) -> int:
        with self._lock:
            return self.workers - self._busy

    def submit(self, trial: Trial, on_event: Callable | None = None) -> Future:
        fut: Future = Future()
        with self._lock:
            self._busy += 1
        self._queue.put((fut, trial, on_event))
        return fut

    def _serve(self, slot: int) -> None:
        # the jail is started from this long-lived thread: bwrap's --die-with-parent follows the thread
        while True:
            item = self._queue.get()
            if item is None:
                break
            fut, trial, on_event = item
            try:
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    jail = self._jails[slot]
                    if jail is None or not jail.alive():
                        jail = self._jails[slot] = Jail(self.configs[slot].serving(trial.handler_name()))
                    fut.set_result(jail.run(trial, self.limits, on_event))
                except JailError as e:  # the jail itself failed, not the model: no verdict on the trial
                    fut.set_exception(e)
                except Exception as e:  # noqa: BLE001 - the driver's own failure, reported per trial
                    fut.set_result(TrialResult("error", f"{type(e).__name__}: {e}"))
            finally:
                with self._lock:
                    self._busy -= 1
        jail = self._jails[slot]
        if jail is not None:
            jail.close()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=60)
        if self._tmp is not None:
            self._tmp.cleanup()

    def abort(self) -> None:
        """Interrupted: kill the jails now (what runs in them is lost; saved epochs are kept)."""
        for jail in self._jails:
            if jail is not None:
                jail.kill()
        self.close()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# imported last: ray_executor imports this package's session and jail modules
from .ray_executor import RayExecutor  # noqa: E402,F401  (one Ray streaming task per trial, no shared storage)
