"""The node side of a Ray trial: no file of the driver is needed here.

`run_trial` is the body of one Ray streaming task. It gets the trial (code text, config, resume state as
bytes) and a handle on the dataset, materialises the dataset once per node into a node-local cache folder
(keyed by the content hash; fetched from the object store only when that folder is missing), runs the trial
in this worker process's jail (kept for its next trials), and yields every frame the jail sends, unjudged,
to the driver: the driver alone holds the test labels, scores the logits and keeps the state
(ray_executor.py). Progress frames are thinned to at most one every PROGRESS_EVERY seconds.

Items yielded: ("start", {node, pid, cached}), ("frame", header, payloads) ..., then one of
("exit", exit_info, stderr_tail) (the jail ran to its end: the driver's judge decides) or
("failed", status, message) (timed out, a malformed stream, no jail could start).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from . import protocol
from .jail import JailConfig, JailError, model_uid
from .protocol import ProtocolError
from .session import Jail, Trial, TrialLimits, TrialResult

CACHE_ENV = "NN_GPT_FRACTAL_NODE_CACHE"
PROGRESS_EVERY = 0.5


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "nn-gpt-fractal-node-cache")


def digest_of(blobs: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(blobs):
        h.update(f"{name}:{len(blobs[name])}:".encode())
        h.update(blobs[name])
    return h.hexdigest()[:32]


def node_data(digest: str, names: dict[str, str], holder: list) -> tuple[dict[str, str], bool]:
    """({key: node-local file}, whether it was already cached). `names`: key -> file name; `holder[0]` is the
    ObjectRef of {key: bytes}, fetched only when this node has no complete copy yet."""
    root = cache_root()
    folder = root / digest
    paths = {k: str(folder / n) for k, n in names.items()}
    done = folder / ".complete"
    if done.exists():
        return paths, True
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{digest}.lock", "w") as lock:  # tasks of one node materialise it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return paths, True
        import ray

        blobs = ray.get(holder[0])
        if digest_of(blobs) != digest or set(blobs) != set(names):
            raise ValueError("the dataset from the object store does not match its content hash")
        folder.mkdir(parents=True, exist_ok=True)
        for k, n in names.items():
            tmp = folder / f".{n}.tmp"
            tmp.write_bytes(blobs[k])
            os.chmod(tmp, 0o444)
            os.replace(tmp, folder / n)
        done.touch()
    return paths, False


class _Relay:
    """Stands in for the driver's judge inside `Jail.run`: queues each frame for the driver. Besides the
    (thinned) progress, a trial has no more than its epochs plus a few frames to send: a flood of others is
    a protocol error here, before it reaches Ray."""

    def __init__(self, out: queue.Queue, max_other: int = 1 << 20) -> None:
        self.out, self.frames, self.epochs = out, 0, []
        self.other, self.max_other = 0, max_other
        self.pending_progress: tuple | None = None
        self.last_progress = 0.0

    def take(self, header: dict, payloads: list[bytes]) -> None:
        self.frames += 1
        if self.frames > protocol.Limits().max_frames:
            raise ProtocolError("too many messages")
        if header.get("type") == "progress":
            self.pending_progress = (header, payloads)
            if time.monotonic() - self.last_progress >= PROGRESS_EVERY:
                self.flush()
            return
        self.other += 1
        if self.other > self.max_other:
            raise ProtocolError("too many messages")
        self.flush()
        self.out.put(("frame", header, payloads))

    def flush(self) -> None:
        if self.pending_progress is not None:
            self.out.put(("frame", *self.pending_progress))
            self.pending_progress = None
            self.last_progress = time.monotonic()

    def finish(self, exit_info: dict | None, tail: str) -> TrialResult:
        self.flush()
        self.out.put(("exit", exit_info, tail))
        return TrialResult("relayed")


class _JailHost:
    """The jail of one Ray worker process, kept for its next trials (Ray reuses a worker for tasks of the same
    kind; the zygote forks a fresh process per model and cleans up after it, as in a local sweep). It is
    started from this host's long-lived thread: bwrap --die-with-parent follows the starting thread, so the
    jail dies with the worker process, a cancelled or lost task's included."""

    _hosts: dict[tuple, "_JailHost"] = {}
    _lock = threading.Lock()

    @classmethod
    def get(cls, data: dict[str, str], threads: int, cuda: bool, scratch_mb: int) -> "_JailHost":
        key = (tuple(sorted(data.items())), threads, cuda, scratch_mb)
        with cls._lock:
            if key not in cls._hosts:
                cls._hosts[key] = cls(data, threads, cuda, scratch_mb)
            return cls._hosts[key]

    def __init__(self, data: dict[str, str], threads: int, cuda: bool, scratch_mb: int) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="fractal-ray-jail-")  # removed when the worker exits
        self.cfg = JailConfig(scratch=Path(self.tmp.name) / "jail", data=data, threads=threads, uid=model_uid(0),
                              cuda=cuda, scratch_mb=scratch_mb)
        self.jail: Jail | None = None
        self.todo: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def run(self, trial: Trial, limits: TrialLimits, out: queue.Queue) -> None:
        self.todo.put((trial, limits, out))

    def _serve(self) -> None:
        while True:
            trial, limits, out = self.todo.get()
            relay = _Relay(out, max_other=int(trial.config.get("epochs") or 0) + 16)
            try:
                if self.jail is None or not self.jail.alive():
                    self.jail = Jail(self.cfg.serving(trial.handler_name()))
                res = self.jail.run(trial, limits, judge=relay)
                if res.status != "relayed":
                    relay.flush()
                    out.put(("failed", res.status, res.message))
            except JailError as e:
                out.put(("failed", "error", str(e)))
            except Exception as e:  # noqa: BLE001 - reported to the driver as the trial's error
                out.put(("failed", "error", f"node: {type(e).__name__}: {e}"))


def on_assigned_gpu(trial: Trial, gpu_ids: list) -> Trial:
    """The trial on the GPU Ray gave this task (a share of it with fractional --gpus-per-trial). The jail sees
    all of the node's GPUs, so the device is named by its index (Ray's ids follow the driver's numbering)."""
    if not gpu_ids or trial.config.get("device") not in ("cuda", "auto"):
        return trial
    try:
        index = int(gpu_ids[0])
    except (TypeError, ValueError):  # a UUID: leave the choice to torch
        return trial
    return replace(trial, config={**trial.config, "device": f"cuda:{index}"})


def run_trial(trial: Trial, limits: TrialLimits, digest: str, names: dict[str, str], holder: list,
              threads: int, cuda: bool):
    """Ray streaming task body (see the module docstring)."""
    import ray

    try:
        data, cached = node_data(digest, names, holder) if names else ({}, True)
    except Exception as e:  # noqa: BLE001
        yield ("failed", "error", f"node: cannot materialise the dataset: {type(e).__name__}: {e}")
        return
    yield ("start", {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "cached": cached})
    if cuda:
        trial = on_assigned_gpu(trial, ray.get_gpu_ids())
    out: queue.Queue = queue.Queue()
    _JailHost.get(data, threads, cuda, limits.disk_mb).run(trial, limits, out)
    while True:
        item = out.get()
        yield item
        if item[0] in ("exit", "failed"):
            break
