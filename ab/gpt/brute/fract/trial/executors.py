"""Where trials run: N local jails, or one Ray task per trial (jailed on its node; ray_executor.py).

`submit(trial, on_event)` returns a concurrent Future of a `TrialResult`; `on_event(kind, data)` sees a
train trial's progress and epochs as they arrive (called from a worker thread). The local executor never
holds more trials than it has jails: each slot takes the next trial only when it is free, and `free()`
tells a caller whether a submission would start at once (the sweep submits only then, so no trial
waits in a queue).
"""
from __future__ import annotations

import collections
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from .gpus import Gpu, gpu_fault
from .jail import JailConfig, JailError, model_uid, require_bwrap
from .session import Jail, Trial, TrialLimits, TrialResult


class LocalExecutor:
    """`workers` jails on this machine. With `gpus` (one `Gpu` per slot, `gpus.slot_gpus`) each jail sees only
    its slot's GPU; a submission goes to a free slot on the GPU running the fewest trials, so the sweep's
    longest-first order spreads across GPUs. A trial that fails through its GPU (`gpus.gpu_fault`) fails with
    that cause; after `GPU_STRIKES` such failures in a row a GPU gets no more trials, and once every GPU is
    out each further trial fails at once with the reason."""

    GPU_STRIKES = 2

    def __init__(self, workers: int, limits: TrialLimits, scratch: Path | None = None,
                 data: dict[str, str] | None = None, threads: int = 1, cuda: bool = False,
                 unsafe_no_jail: bool = False, warm: tuple[str, ...] = (), gpus: list[Gpu] | None = None,
                 harden: bool = True, collapse_heap: bool = False) -> None:
        if not unsafe_no_jail:
            require_bwrap()  # one clear line now, before anything runs
        self.workers, self.limits = max(1, len(gpus) if gpus else workers), limits
        self._tmp = tempfile.TemporaryDirectory(prefix="fractal-jails-") if scratch is None else None
        root = Path(self._tmp.name if self._tmp else scratch).absolute()
        self.slot_gpu: list[Gpu | None] = list(gpus) if gpus else [None] * self.workers
        self.configs = [JailConfig(scratch=root / f"jail{k}", scratch_mb=limits.disk_mb, data=dict(data or {}),
                                   threads=threads, uid=model_uid(k), cuda=cuda and not gpus, gpu=self.slot_gpu[k],
                                   unsafe_no_jail=unsafe_no_jail, warm=warm, harden=harden,
                                   collapse_heap=collapse_heap)
                        for k in range(self.workers)]
        self._assigned: list[collections.deque] = [collections.deque() for _ in range(self.workers)]
        self._shared: collections.deque = collections.deque()  # submitted while no slot was free: any slot takes it
        self._busy = [False] * self.workers
        self._closing = False
        self._strikes: dict[int, int] = {}  # GPU index -> GPU failures in a row
        self.retired: dict[int, str] = {}  # GPU index -> why it gets no more trials
        self._cond = threading.Condition()
        self._jails: list[Jail | None] = [None] * self.workers
        self._threads = [threading.Thread(target=self._serve, args=(k,), daemon=True) for k in range(self.workers)]
        for t in self._threads:
            t.start()

    def _usable(self, slot: int) -> bool:
        gpu = self.slot_gpu[slot]
        return gpu is None or gpu.index not in self.retired

    def _all_retired(self) -> bool:
        return not any(self._usable(k) for k in range(self.workers))

    def free(self) -> int:
        with self._cond:
            if self._all_retired():
                return 1  # each submission fails at once with the reason: the sweep goes on to its end
            idle = sum(1 for k in range(self.workers) if not self._busy[k] and self._usable(k))
            return idle - len(self._shared)

    def _pick(self) -> int | None:
        """A free usable slot on the GPU with the fewest running trials (ties: the lowest slot)."""
        def gpu_of(k: int):
            return self.slot_gpu[k].index if self.slot_gpu[k] else None

        running: dict = {}
        for k in range(self.workers):
            running[gpu_of(k)] = running.get(gpu_of(k), 0) + self._busy[k]
        free = [k for k in range(self.workers) if not self._busy[k] and self._usable(k)]
        return min(free, key=lambda k: (running[gpu_of(k)], k)) if free else None

    def submit(self, trial: Trial, on_event: Callable | None = None) -> Future:
        fut: Future = Future()
        with self._cond:
            if self._all_retired():
                fut.set_running_or_notify_cancel()
                why = "; ".join(f"cuda:{i}: {r}" for i, r in sorted(self.retired.items()))
                fut.set_result(TrialResult("error", f"no working GPU left ({why}); rerun with --retry-failed "
                                                    f"once the GPUs work again"))
                return fut
            slot = self._pick()
            if slot is None:
                self._shared.append((fut, trial, on_event))
            else:
                self._busy[slot] = True
                self._assigned[slot].append((fut, trial, on_event))
            self._cond.notify_all()
        return fut

    def _next(self, slot: int):
        with self._cond:
            while True:
                if self._assigned[slot]:
                    return self._assigned[slot].popleft()
                if self._shared and self._usable(slot):
                    self._busy[slot] = True
                    return self._shared.popleft()
                self._busy[slot] = False
                if self._closing:
                    return None
                self._cond.wait()

    def _serve(self, slot: int) -> None:
        # the jail is started from this long-lived thread: bwrap's --die-with-parent follows the thread
        while (item := self._next(slot)) is not None:
            fut, trial, on_event = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                jail = self._jails[slot]
                if jail is None or not jail.alive():
                    jail = self._jails[slot] = Jail(self.configs[slot].serving(trial.handler_name()))
                fut.set_result(self._judge_gpu(slot, jail.run(trial, self.limits, on_event)))
            except JailError as e:  # the jail itself failed, not the model: no verdict on the trial
                fut.set_exception(e)
            except Exception as e:  # noqa: BLE001 - the driver's own failure, reported per trial
                fut.set_result(TrialResult("error", f"{type(e).__name__}: {e}"))
        jail = self._jails[slot]
        if jail is not None:
            jail.close()

    def _judge_gpu(self, slot: int, res: TrialResult) -> TrialResult:
        """On a GPU slot: a failure of the GPU itself names the GPU and the cause, and counts a strike."""
        gpu = self.slot_gpu[slot]
        if gpu is None:
            return res
        kind = gpu_fault(res.message) if not res.ok else None
        with self._cond:
            if kind is None:
                if res.ok:
                    self._strikes[gpu.index] = 0
                return res
            self._strikes[gpu.index] = self._strikes.get(gpu.index, 0) + 1
            if self._strikes[gpu.index] >= self.GPU_STRIKES and gpu.index not in self.retired:
                self.retired[gpu.index] = f"{kind}, {self._strikes[gpu.index]} trials in a row"
        note = f"; {gpu.label} gets no more trials" if gpu.index in self.retired else ""
        return TrialResult("error", f"GPU failure on {gpu.label}: {kind}: {res.message}{note}"[:1000],
                           res.value, res.epochs)

    def close(self) -> None:
        with self._cond:
            self._closing = True  # each slot finishes what it was given, then stops
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=60)
        if self._tmp is not None:
            self._tmp.cleanup()

    def abort(self) -> None:
        """Interrupted: kill the jails now (what runs in them is lost; saved epochs are kept)."""
        with self._cond:  # nothing waiting starts any more
            for q in (*self._assigned, self._shared):
                while q:
                    q.popleft()[0].cancel()
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
