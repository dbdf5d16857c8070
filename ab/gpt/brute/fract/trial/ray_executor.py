"""Trials on a Ray cluster with no shared storage: everything a trial needs travels through Ray.

The driver puts the dataset into the object store once (`ray.put`; the nodes cache it, ray_node.py) and
starts one streaming task per trial with the code text, config and resume state. The jail on the node
streams its frames back; here a `_Judge` (session.py) checks them, scores the logits against the labels
only the driver holds, and writes state and history under the trial's `state_dir`, exactly as for a
local jail. So per-epoch records are made once, by the driver, in order.

A task lost to a dead worker or node (any Ray system error) is started again elsewhere from the last epoch
the driver received (its state bytes are kept here), at most `restarts` times. A malformed stream cancels
the task. Packing: each task asks for `cpus` CPUs, `gpus` GPUs (fractional) and `memory` bytes; `free()`
counts how many more trials the alive nodes hold at once.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .jail import require_bwrap, source_roots
from .protocol import ProtocolError
from .ray_node import digest_of, run_trial
from .session import Trial, TrialLimits, TrialResult, _Judge

GIB = 1 << 30


def default_memory(data_bytes: int) -> int:
    """Ray `memory=` of one trial when no option gives it: the zygote and torch (~1 GiB) plus the data twice
    (the mapped files and their tensor copy)."""
    return GIB + 2 * data_bytes


def _say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


class RayExecutor:
    """One Ray streaming task per trial, jailed on its node; see the module docstring.

    `address`: a running cluster (the nodes need this package and bubblewrap installed), else a local Ray
    is started. `gpus`: a GPU share per trial (True means 1). `log` gets one line per placement and restart.
    """

    def __init__(self, limits: TrialLimits, data: dict[str, str] | None = None, address: str | None = None,
                 gpus: float | bool = False, cpus: float = 1.0, memory: int | None = None,
                 num_cpus: int | None = None, threads: int = 1, restarts: int = 3,
                 log: Callable[[str], None] | None = None) -> None:
        import ray

        require_bwrap()  # the driver runs no model, but a cluster without jails must not start
        self.ray, self.limits, self.threads, self.restarts = ray, limits, threads, restarts
        self.gpus = float(gpus)
        self.cuda = self.gpus > 0
        self.cpus = float(cpus)
        self.log = log or _say
        self._running: dict[Future, object] = {}  # future -> the task's generator (None between attempts)
        self._lock = threading.Lock()
        self._capacity_at = 0.0
        self._capacity = 1
        self._closing = False
        blobs = {k: Path(v).read_bytes() for k, v in (data or {}).items()}
        self.names = {k: Path(v).name for k, v in (data or {}).items()}
        self.digest = digest_of(blobs)
        self.memory = int(memory) if memory else default_memory(sum(map(len, blobs.values())))
        self.started_here = not ray.is_initialized()
        if self.started_here:
            if address:  # the nodes have the package installed: nothing of the driver's paths is sent
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR",
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(source_roots())}},
                         object_store_memory=max(100 << 20, 3 * sum(map(len, blobs.values()))))
        if self._fits() == 0:  # Ray would keep the tasks pending forever
            gpus = max((n["Resources"].get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            mem = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            self.close()
            raise ValueError(f"no node of the Ray cluster holds one trial ({self.cpus:g} CPUs, {self.gpus:g} GPUs, "
                             f"{self.memory / GIB:.1f} GiB each; the most any node has: {gpus:g} GPUs, "
                             f"{mem / GIB:.1f} GiB): lower --cpus-per-trial / --gpus-per-trial / "
                             f"--memory-per-trial-gb or add larger nodes")
        # inside a list: a task fetches the data only when its node has no cached copy
        self.holder = [ray.put(blobs)] if blobs else [None]
        del blobs
        resources = {"num_cpus": self.cpus, "num_gpus": self.gpus, "memory": self.memory}
        self.task = ray.remote(num_returns="streaming", max_retries=0, **resources)(run_trial)
        self.workers = self.capacity()

    def capacity(self) -> int:
        """Trials the alive nodes hold at once (per node: the fewest that its CPUs, GPUs, memory allow)."""
        if time.monotonic() - self._capacity_at >= 5:
            self._capacity, self._capacity_at = max(1, self._fits()), time.monotonic()
        return self._capacity

    def _fits(self) -> int:
        n = 0
        for node in self.ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources", {})
            fits = [res.get(k, 0) / need for k, need in (("CPU", self.cpus), ("GPU", self.gpus),
                                                          ("memory", self.memory)) if need > 0]
            n += int(min(fits) + 1e-9) if fits else 0
        return n

    def free(self) -> int:
        with self._lock:
            return self.capacity() - len(self._running)

    def submit(self, trial: Trial, on_event: Callable | None = None) -> Future:
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        with self._lock:
            self._running[fut] = None
        threading.Thread(target=self._drive, args=(fut, trial, on_event), daemon=True).start()
        return fut

    def _drive(self, fut: Future, trial: Trial, on_event) -> None:
        try:
            res = self._attempts(fut, trial, on_event)
        except Exception as e:  # noqa: BLE001 - the driver's own failure, reported per trial
            res = TrialResult("error", f"ray: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
        with self._lock:
            self._running.pop(fut, None)
        fut.set_result(res)

    def _attempts(self, fut: Future, trial: Trial, on_event) -> TrialResult:
        ray = self.ray
        judge = _Judge(trial, self.limits, on_event)
        state = trial.resume
        deadline = time.monotonic() + trial.timeout
        name = f"{trial.config.get('name', trial.task)} s{trial.config.get('seed', '')}"
        for attempt in range(self.restarts + 1):
            # the node sees the code, config, epoch count and state; never the labels or the driver's folders
            wire = replace(trial, labels=None, state_dir=None, resume=state,
                           history=[{"epoch": e["epoch"]} for e in judge.epochs],
                           timeout=max(1.0, deadline - time.monotonic()))
            with self._lock:
                if self._closing:
                    return TrialResult("killed", "the sweep was interrupted", judge.info, judge.epochs)
                gen = self.task.remote(wire, self.limits, self.digest, self.names, self.holder, self.threads, self.cuda)
                self._running[fut] = gen
            try:
                for ref in gen:
                    item = ray.get(ref)
                    kind = item[0]
                    if kind == "start" and (trial.task == "train" or attempt):
                        info = item[1]
                        self.log(f"ray: {name} on node {info['node'][:12]} pid {info['pid']} from epoch "
                                 f"{len(judge.epochs)}" + ("" if info["cached"] else " (dataset cached there now)"))
                    elif kind == "frame":
                        header, payloads = item[1], item[2]
                        judge.take(header, payloads)
                        if header.get("type") == "epoch" and len(payloads) == 2 and payloads[1]:
                            state = payloads[1]  # what a restart resumes from
                    elif kind == "exit":
                        return judge.finish(item[1], item[2])
                    elif kind == "failed":
                        return TrialResult(item[1], item[2], judge.info, judge.epochs)
                raise ProtocolError("the task ended without a result")
            except ProtocolError as e:
                ray.cancel(gen, force=True)
                return TrialResult("error", f"protocol error: {e}", judge.info, judge.epochs)
            except ray.exceptions.RayError as e:
                if self._closing:
                    return TrialResult("killed", "the sweep was interrupted", judge.info, judge.epochs)
                if judge.final is not None:  # lost after its final message: nothing is left to run
                    return judge.finish(None, "")
                why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                if attempt == self.restarts:
                    return TrialResult("error", f"ray: lost {attempt + 1} times, last: {type(e).__name__}: {why}",
                                       judge.info, judge.epochs)
                self.log(f"ray: {name} lost ({type(e).__name__}); restarting from epoch {len(judge.epochs)}")
        raise AssertionError("unreachable")

    def _cancel_all(self) -> None:
        with self._lock:
            self._closing = True
            gens = [g for g in self._running.values() if g is not None]
        for gen in gens:
            try:
                self.ray.cancel(gen, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass

    def close(self) -> None:
        self._cancel_all()  # nothing runs after a normal end
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def abort(self) -> None:
        """Interrupted: cancel the running tasks (their jails die with them; received epochs are kept)."""
        self._cancel_all()
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
